//! `secret-rotator diagnose "<error text>"`: from an AADSTS error line to the application, the
//! credential involved, where the secret is used and what to run.
//!
//! Codes understood: 7000222 (expired secret: which passwords expired), 7000215 (wrong secret:
//! which passwords are valid; the value sent matches none), 700016 (no such application in the
//! tenant), 90002 (no such tenant), and the client-assertion codes of certificate credentials
//! (700027, 700024, 7000274, 7000214, 7000277, 1000502: [`certificates`], with the application's
//! registered certificates). The application is read from Graph by appId; where it is
//! used comes from the policy (enrolled consumers) and, for enrolled credentials, from the
//! enrolled sites' settings (Key Vault references to the credential's secret). Key Vault
//! references name a vault and a secret, never a value, so they are shown; plain setting values
//! never are.

mod certificates;

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{CliError, Connection};
use crate::engine::inventory::{AadstsLine, days_left};
use crate::engine::kvref::KeyVaultReference;
use crate::planner::AppState;
use crate::policy::{AppRef, ArmResource, Consumer, CredentialPolicy};

/// Where a password stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PasswordState {
    Expired,
    /// Valid, but inside the renewal window (the credential's, or 30 days when not enrolled).
    Expiring,
    Valid,
    /// Not valid yet (start in the future).
    NotYetValid,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordFinding {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub end: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    pub state: PasswordState,
    /// The password whose value is in the enrolled Key Vault secret, when known.
    pub in_key_vault: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationFound {
    pub display_name: String,
    pub app_id: Uuid,
    pub object_id: Uuid,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultReferenceFound {
    pub site: String,
    pub setting: String,
    pub reference: String,
}

/// The whole answer; `--json` prints it as is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub code: u64,
    pub meaning: String,
    pub app_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub application: Option<ApplicationFound>,
    pub passwords: Vec<PasswordFinding>,
    /// The application's certificates (`keyCredentials`), for the certificate codes.
    pub keys: Vec<certificates::KeyFinding>,
    /// The passwords (or certificates) the error points at (expired ones for 7000222, valid ones for 7000215).
    pub involved: Vec<Uuid>,
    pub findings: Vec<String>,
    pub enrolled_as: Option<String>,
    /// `vault/secret` of the enrolled credential.
    pub key_vault: Option<String>,
    /// The enrolled consumers, described.
    pub used_by: Vec<String>,
    pub key_vault_references: Vec<KeyVaultReferenceFound>,
    /// What to do, most direct first.
    pub fix: Vec<String>,
    /// A policy entry to enrol the application, when it is not enrolled.
    pub policy_snippet: Option<serde_json::Value>,
}

fn enrolled_for<'a>(
    conn: &'a Connection,
    app_id: Uuid,
    app: Option<&AppState>,
) -> Option<&'a CredentialPolicy> {
    conn.policy()
        .credentials
        .iter()
        .find(|c| match c.application {
            AppRef::AppId(id) => id == app_id,
            AppRef::ObjectId(id) => app.is_some_and(|a| a.object_id == id),
        })
}

fn site_name(s: &ArmResource) -> String {
    match &s.slot {
        Some(slot) => format!("{}/{} (slot {slot})", s.resource_group, s.name),
        None => format!("{}/{}", s.resource_group, s.name),
    }
}

/// A policy name from an application's display name: `^[a-z0-9][a-z0-9-]{0,62}$`.
fn policy_name(display_name: &str) -> String {
    let mut name = String::new();
    for ch in display_name.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name: String = name.trim_end_matches('-').chars().take(63).collect();
    if name.is_empty() {
        "app".to_string()
    } else {
        name.trim_end_matches('-').to_string()
    }
}

fn policy_snippet(app_id: Uuid, display_name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": policy_name(display_name),
        "application": { "appId": app_id },
        "keyVault": { "vault": "<vault that will hold the secret>", "secret": "<secret name>" },
        "consumers": [
            { "type": "notifyOnly", "system": "<where the secret is used>",
              "instructions": "<how a person sets the new value there>" }
        ]
    })
}

/// Builds the diagnosis. Graph and ARM refusals become findings, not errors: a partial answer
/// (from the policy alone) still helps.
/// What the operator adds for a line that names no application.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--app-id`: the client id the failing program uses. A line that names another one wins
    /// (the finding says so).
    pub app_id: Option<Uuid>,
    /// `--secret-hint`: the failing secret's first three characters (anything after them is
    /// ignored and never shown), matched against the visible applications' password hints.
    pub secret_hint: Option<String>,
}

pub async fn diagnose(
    conn: &Connection,
    text: &str,
    given: Given,
    now: DateTime<Utc>,
) -> Result<Diagnosis, CliError> {
    let given_app = match (given.app_id, &given.secret_hint) {
        (Some(id), _) => Some(id),
        (None, Some(h)) if AadstsLine::parse(text).is_some_and(|l| l.app_id.is_none()) => {
            app_by_hint(conn, h).await?
        }
        _ => None,
    };
    diagnose_app(conn, text, given_app, given.secret_hint.is_some(), now).await
}

/// The application whose password has this hint, when exactly one has; otherwise `None`
/// (the findings then say why).
async fn app_by_hint(conn: &Connection, hint: &str) -> Result<Option<Uuid>, CliError> {
    let hint: String = hint.chars().take(3).collect();
    let mut pager = conn.graph.list_applications(None, 100);
    let mut matches = Vec::new();
    while let Some(page) = pager.next_page().await? {
        for app in page {
            if app
                .passwords
                .iter()
                .any(|p| p.hint.as_deref() == Some(hint.as_str()))
            {
                matches.push(app.app_id);
            }
        }
    }
    Ok(match matches.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

async fn diagnose_app(
    conn: &Connection,
    text: &str,
    given_app: Option<Uuid>,
    hint_given: bool,
    now: DateTime<Utc>,
) -> Result<Diagnosis, CliError> {
    let line = AadstsLine::parse(text).ok_or(CliError::NoAadstsCode)?;
    let assertion = certificates::AssertionLine::parse(text);
    let given_app = given_app.or(assertion.app_id);
    let mut d = Diagnosis::of(&line, given_app);
    if line.code == 90002 {
        unknown_tenant(&mut d, conn, &line);
        return Ok(d);
    }
    if let (Some(named), Some(given)) = (line.app_id, given_app)
        && named != given
    {
        d.findings.push(format!(
            "the line names application {named}, not {given} (--app-id): diagnosing {named}"
        ));
    }
    let Some(app_id) = d.app_id else {
        cannot_tell_which_app(&mut d, hint_given);
        return Ok(d);
    };
    let app = read_application(&mut d, conn, app_id, line.code).await?;
    if certificates::CERTIFICATE_CODES.contains(&line.code) {
        certificate_code(&mut d, conn, &assertion, app.as_ref(), app_id, now).await;
        return Ok(d);
    }
    let cred = enrolled_for(conn, app_id, app.as_ref());
    if let Some(app) = &app {
        let renew_days = cred.map(|c| c.renew_before.num_days()).unwrap_or(30);
        let in_vault = match cred {
            Some(c) => key_id_in_vault(conn, c, now).await,
            None => None,
        };
        d.application = Some(ApplicationFound {
            display_name: app.display_name.clone(),
            app_id: app.app_id,
            object_id: app.object_id,
        });
        d.passwords = password_findings(app, renew_days, in_vault, now);
        explain_code(&mut d, app, line.code, &conn.settings.tenant_id, now);
    }
    match cred {
        Some(c) => enrolled(&mut d, conn, c, line.code).await,
        None if matches!(line.code, 7000222 | 7000215) => {
            not_enrolled(&mut d, conn, app.as_ref(), app_id)
        }
        None => {}
    }
    Ok(d)
}

impl Diagnosis {
    /// What the line alone says; the findings come from Graph, the policy and ARM.
    fn of(line: &AadstsLine, given_app: Option<Uuid>) -> Self {
        Self {
            code: line.code,
            meaning: certificates::meaning(line.code)
                .unwrap_or(line.meaning())
                .to_string(),
            app_id: line.app_id.or(given_app),
            tenant: line.tenant.clone(),
            application: None,
            passwords: Vec::new(),
            keys: Vec::new(),
            involved: Vec::new(),
            findings: Vec::new(),
            enrolled_as: None,
            key_vault: None,
            used_by: Vec::new(),
            key_vault_references: Vec::new(),
            fix: Vec::new(),
            policy_snippet: None,
        }
    }
}

/// A client-assertion code: the application's certificates against the line, and its
/// certificate credential when enrolled.
async fn certificate_code(
    d: &mut Diagnosis,
    conn: &Connection,
    line: &certificates::AssertionLine,
    app: Option<&AppState>,
    app_id: Uuid,
    now: DateTime<Utc>,
) {
    let policy = conn.policy();
    let enrolled =
        certificates::enrolled_for(&policy.certificates, app_id, app.map(|a| a.object_id));
    let name = app.map_or_else(|| app_id.to_string(), |a| a.display_name.clone());
    if let Some(app) = app {
        d.application = Some(ApplicationFound {
            display_name: app.display_name.clone(),
            app_id: app.app_id,
            object_id: app.object_id,
        });
        let renew_days = enrolled.map_or(30, |c| c.renew_before.num_days());
        match conn.keys.list(app.object_id).await {
            Ok(keys) => {
                d.keys = certificates::key_findings(&keys, line.thumbprint.as_deref(), renew_days, now)
            }
            Err(e) => d.findings.push(format!(
                "could not read the application's certificates from Graph ({e}); the rotator's identity needs Application.Read.All, or to own the application"
            )),
        }
    }
    certificates::explain(d, line, &name, enrolled);
}

/// AADSTS90002: the tenant named does not exist in this cloud.
fn unknown_tenant(d: &mut Diagnosis, conn: &Connection, line: &AadstsLine) {
    let my_tenant = &conn.settings.tenant_id;
    let named = line.tenant.as_deref().unwrap_or("(not named)");
    d.findings.push(format!(
        "the sign-in went to tenant '{named}', which does not exist in the {:?} cloud",
        conn.cloud
    ));
    if !named.eq_ignore_ascii_case(my_tenant) {
        d.findings.push(format!(
            "this rotator's tenant is '{my_tenant}' (AZURE_TENANT_ID)"
        ));
    }
    d.fix.push("correct the tenant id (or its domain) in the client's configuration; check it targets the right cloud (public, usgovernment, china)".into());
}

/// The application from Graph; a missing one or a refusal becomes a finding (a partial answer
/// from the policy alone still helps), anything else an error.
async fn read_application(
    d: &mut Diagnosis,
    conn: &Connection,
    app_id: Uuid,
    code: u64,
) -> Result<Option<AppState>, CliError> {
    let my_tenant = &conn.settings.tenant_id;
    match conn.graph.get_application(&AppRef::AppId(app_id)).await {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_not_found() => {
            d.findings.push(format!(
                "no application with appId {app_id} exists in tenant {my_tenant}"
            ));
            if code == 700016 {
                d.fix.push(format!(
                    "check the client id the caller uses, and that it signs in to the tenant that holds the application ({my_tenant} does not); a deleted application can be restored from Entra ID > App registrations > Deleted applications within 30 days"
                ));
            }
            Ok(None)
        }
        Err(e) if e.is_access_denied() => {
            d.findings.push(format!(
                "could not read the application from Graph ({e}); the rotator's identity needs Application.Read.All, or to own the application"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The key id whose value the enrolled credential's Key Vault secret holds, when known.
async fn key_id_in_vault(
    conn: &Connection,
    c: &CredentialPolicy,
    now: DateTime<Utc>,
) -> Option<Uuid> {
    let (credentials, _) = conn.engine.credentials_status(now).await;
    credentials
        .into_iter()
        .find(|s| s.name == c.name)
        .and_then(|s| s.key_id_in_use)
        .and_then(|k| Uuid::parse_str(&k).ok())
}

fn password_findings(
    app: &AppState,
    renew_days: i64,
    in_vault: Option<Uuid>,
    now: DateTime<Utc>,
) -> Vec<PasswordFinding> {
    app.passwords
        .iter()
        .map(|p| {
            let left = p.end.map(|e| days_left(e, now));
            let state = match (p.start, p.end) {
                (_, Some(end)) if end <= now => PasswordState::Expired,
                (Some(start), _) if start > now => PasswordState::NotYetValid,
                (_, Some(_)) if left.is_some_and(|l| l < renew_days) => PasswordState::Expiring,
                _ => PasswordState::Valid,
            };
            PasswordFinding {
                key_id: p.key_id,
                display_name: p.display_name.clone(),
                end: p.end,
                days_left: left,
                state,
                in_key_vault: in_vault == Some(p.key_id),
            }
        })
        .collect()
}

/// A password for a finding: description, key id, and when it ends.
fn describe_password(p: &PasswordFinding) -> String {
    format!(
        "'{}' ({}), {}",
        p.display_name.as_deref().unwrap_or("no description"),
        p.key_id,
        match (p.end, p.days_left) {
            (Some(e), Some(l)) if l < 0 =>
                format!("expired on {} ({} days ago)", e.format("%Y-%m-%d"), -l),
            (Some(e), Some(l)) => format!("expires on {} ({l} days left)", e.format("%Y-%m-%d")),
            _ => "no end date".to_string(),
        }
    )
}

/// What the code means for this application's passwords.
fn explain_code(d: &mut Diagnosis, app: &AppState, code: u64, my_tenant: &str, now: DateTime<Utc>) {
    let name = &app.display_name;
    match code {
        7000222 => expired_secret(d, name, now),
        7000215 => wrong_secret(d, name),
        700016 => {
            d.findings.push(format!(
                "{name} ({}) exists in tenant {my_tenant}: the client signed in to another tenant",
                app.app_id
            ));
            d.fix.push(format!(
                "set the client's tenant (authority) to {my_tenant}; its secret is not the problem"
            ));
        }
        _ => {}
    }
}

/// AADSTS7000222: which passwords expired (or, with none expired, the one expiring soonest).
fn expired_secret(d: &mut Diagnosis, name: &str, now: DateTime<Utc>) {
    let expired: Vec<(String, Uuid)> = d
        .passwords
        .iter()
        .filter(|p| p.state == PasswordState::Expired)
        .map(|p| (describe_password(p), p.key_id))
        .collect();
    if !expired.is_empty() {
        for (text, key_id) in expired {
            d.findings
                .push(format!("expired password of {name}: {text}"));
            d.involved.push(key_id);
        }
        return;
    }
    d.findings.push(format!(
        "no password of {name} has expired as of {}: the client holds a value whose password expired and has since been removed, or the line predates a renewal",
        now.format("%Y-%m-%d %H:%M UTC")
    ));
    // The one that will expire next is what the client most likely holds.
    if let Some(next) = d
        .passwords
        .iter()
        .filter(|p| p.end.is_some())
        .min_by_key(|p| p.end)
    {
        let (text, key_id) = (describe_password(next), next.key_id);
        d.findings.push(format!(
            "the password of {name} that expires soonest: {text}"
        ));
        d.involved.push(key_id);
    }
}

/// AADSTS7000215: the valid passwords, none of which the value sent matches.
fn wrong_secret(d: &mut Diagnosis, name: &str) {
    let valid: Vec<(String, Uuid)> = d
        .passwords
        .iter()
        .filter(|p| matches!(p.state, PasswordState::Valid | PasswordState::Expiring))
        .map(|p| (describe_password(p), p.key_id))
        .collect();
    if valid.is_empty() {
        d.findings
            .push(format!("{name} has no valid password at all"));
    }
    for (text, key_id) in valid {
        d.findings.push(format!("valid password of {name}: {text}"));
        d.involved.push(key_id);
    }
    d.findings.push(format!(
        "the value the client sent matches none of {name}'s passwords: it may be a password's Secret ID (keyId) instead of its value, a value copied with quotes or cut short, or the value of a password that was removed"
    ));
}

/// An enrolled credential: its Key Vault secret, its consumers, the sites' references to it,
/// and (for a secret problem) the rotation to run.
async fn enrolled(d: &mut Diagnosis, conn: &Connection, c: &CredentialPolicy, code: u64) {
    d.enrolled_as = Some(c.name.clone());
    let kv = format!("{}/{}", c.key_vault.vault, c.key_vault.secret);
    d.findings.push(format!(
        "enrolled as '{}': its current value is kept in Key Vault secret {kv}",
        c.name
    ));
    d.key_vault = Some(kv);
    let mut sites: Vec<&ArmResource> = Vec::new();
    for consumer in &c.consumers {
        d.used_by.push(match consumer {
            Consumer::NotifyOnly {
                system,
                instructions,
            } => format!("{system} (set by hand: {instructions})"),
            other => other.describe(),
        });
        if let Consumer::AppSettingKeyVaultRef { site, .. } | Consumer::AppSettingValue { site, .. } =
            consumer
            && !sites.contains(&site)
        {
            sites.push(site);
        }
    }
    for site in sites {
        site_references(d, conn, c, site).await;
    }
    // A new secret only helps when the secret was the problem (not for a wrong tenant or
    // client id).
    if !matches!(code, 7000222 | 7000215) {
        return;
    }
    d.fix
        .push(format!("secret-rotator rotate --only {} --force", c.name));
    for consumer in &c.consumers {
        if let Consumer::NotifyOnly {
            system,
            instructions,
        } = consumer
        {
            d.fix.push(format!(
                "then on {system}: {instructions} (the new value is the latest version of Key Vault secret {}/{})",
                c.key_vault.vault, c.key_vault.secret
            ));
        }
    }
}

/// The site's settings that are Key Vault references to the credential's secret.
async fn site_references(
    d: &mut Diagnosis,
    conn: &Connection,
    c: &CredentialPolicy,
    site: &ArmResource,
) {
    let settings = match conn.web.list_app_settings(site).await {
        Ok(settings) => settings,
        Err(e) => {
            d.findings.push(format!(
                "could not read the settings of site {}: {e}",
                site_name(site)
            ));
            return;
        }
    };
    for (setting, value) in &settings.0 {
        if let Some(r) = KeyVaultReference::parse(value.expose())
            && r.points_at(&c.key_vault.vault, &c.key_vault.secret)
        {
            d.key_vault_references.push(KeyVaultReferenceFound {
                site: site_name(site),
                setting: setting.clone(),
                // A reference names a vault and secret, never a value.
                reference: value.expose().to_string(),
            });
        }
    }
}

/// A secret problem of an application nothing rotates: how to enrol it.
fn not_enrolled(d: &mut Diagnosis, conn: &Connection, app: Option<&AppState>, app_id: Uuid) {
    let display = app
        .map(|a| a.display_name.clone())
        .unwrap_or_else(|| app_id.to_string());
    d.findings.push(format!(
        "{display} is not enrolled in the policy ({}): nothing rotates its secret",
        conn.policy().source
    ));
    d.fix.push(format!(
        "enrol it: add the entry below to the policy's \"credentials\" (fill in the vault and where the secret is used), then run `secret-rotator plan` and `secret-rotator rotate --only {}`",
        policy_name(&display)
    ));
    d.policy_snippet = Some(policy_snippet(app_id, &display));
}

/// A line without an application id (the pre-2022 wordings "Invalid client secret is
/// provided." and "The provided client secret keys are expired."): its Trace ID and
/// Correlation ID name the request, not the application, so no GUID of it is guessed.
fn cannot_tell_which_app(d: &mut Diagnosis, hint_given: bool) {
    d.findings.push(
        "this line does not say which application failed (Entra's wording before 2022 names none); \
         its Trace ID and Correlation ID identify the sign-in request, not the application"
            .into(),
    );
    if hint_given {
        d.findings.push(
            "no single visible application has a password with that hint (none, several, or the \
             rotator may not list all applications)"
                .into(),
        );
    }
    d.fix.push(
        "run again with the client id the failing program uses: secret-rotator diagnose --app-id <client id> \"<line>\" \
         (it is in the program's configuration, e.g. AZURE_CLIENT_ID or ClientId)"
            .into(),
    );
    d.fix.push(
        "or find it by the failing secret: secret-rotator diagnose --secret-hint <its first three characters> \"<line>\""
            .into(),
    );
}

pub fn render(d: &Diagnosis, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, d).map_err(std::io::Error::other)?;
        return writeln!(out);
    }
    writeln!(out, "AADSTS{}: {}", d.code, d.meaning)?;
    if let Some(a) = &d.application {
        writeln!(
            out,
            "Application: {} (appId {}, object id {})",
            a.display_name, a.app_id, a.object_id
        )?;
    } else if let Some(id) = d.app_id {
        writeln!(out, "Application: appId {id} (not found or not readable)")?;
    }
    render_passwords(d, out)?;
    render_keys(d, out)?;
    writeln!(out, "Findings:")?;
    for f in &d.findings {
        writeln!(out, "  - {f}")?;
    }
    if !d.used_by.is_empty() {
        writeln!(out, "Used by:")?;
        for u in &d.used_by {
            writeln!(out, "  - {u}")?;
        }
    }
    if !d.key_vault_references.is_empty() {
        writeln!(out, "Key Vault references to it:")?;
        for r in &d.key_vault_references {
            writeln!(
                out,
                "  - site {} setting {} = {}",
                r.site, r.setting, r.reference
            )?;
        }
    }
    if !d.fix.is_empty() {
        writeln!(out, "Fix:")?;
        for f in &d.fix {
            writeln!(out, "  {f}")?;
        }
    }
    if let Some(s) = &d.policy_snippet {
        let text = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
        writeln!(out, "Policy entry:")?;
        for l in text.lines() {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

/// When a credential ends, as the listing shows it.
fn ends(end: Option<DateTime<Utc>>, days_left: Option<i64>) -> String {
    match (end, days_left) {
        (Some(e), Some(l)) => format!("ends {} ({l} days)", e.format("%Y-%m-%d")),
        _ => "no end date".into(),
    }
}

/// The application's passwords, the ones the line involves marked `->`.
fn render_passwords(d: &Diagnosis, out: &mut dyn Write) -> std::io::Result<()> {
    if d.passwords.is_empty() {
        return Ok(());
    }
    writeln!(out, "Passwords:")?;
    for p in &d.passwords {
        writeln!(
            out,
            "  {} {:<12} {} '{}' {}{}",
            if d.involved.contains(&p.key_id) {
                "->"
            } else {
                "  "
            },
            format!("{:?}", p.state).to_lowercase(),
            p.key_id,
            p.display_name.as_deref().unwrap_or(""),
            ends(p.end, p.days_left),
            if p.in_key_vault {
                " [in Key Vault]"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// The application's certificates, the one the line names marked `->`.
fn render_keys(d: &Diagnosis, out: &mut dyn Write) -> std::io::Result<()> {
    if d.keys.is_empty() {
        return Ok(());
    }
    writeln!(out, "Certificates:")?;
    for k in &d.keys {
        let thumbprint = if k.thumbprint.is_empty() {
            "unknown"
        } else {
            &k.thumbprint
        };
        writeln!(
            out,
            "  {} {:<12} {} '{}' thumbprint {} {}",
            if k.named_by_error { "->" } else { "  " },
            format!("{:?}", k.state).to_lowercase(),
            k.key_id,
            k.display_name.as_deref().unwrap_or(""),
            thumbprint,
            ends(k.end, k.days_left),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_from_display_names_are_valid() {
        assert_eq!(policy_name("ezsign2"), "ezsign2");
        assert_eq!(
            policy_name("TDC Erhverv Integration App"),
            "tdc-erhverv-integration-app"
        );
        assert_eq!(policy_name("--Æ weird__name--"), "weird-name");
        assert_eq!(policy_name("???"), "app");
        assert!(policy_name(&"x".repeat(100)).len() <= 63);
    }
}
