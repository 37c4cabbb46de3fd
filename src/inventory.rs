//! Tenant inventory and diagnosis: every credential of every application the rotator can see,
//! whether anyone rotates it, and what an AADSTS error line points at.
//!
//! The scan is streamed page by page (Graph's `@odata.nextLink`): rows are written as they come
//! and nothing holds the whole tenant, so 100,000 applications cost the memory of one page.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::azure::graph::CertificateInfo;
use crate::planner::{AppState, MARKER_PREFIX};
use crate::policy::{AppRef, Policy};

/// Secret or certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    Secret,
    Certificate,
}

/// Which object holds a credential: the application registration, or its service principal
/// (enterprise application: SAML signing certificates, passwords added to the SP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Holder {
    Application,
    ServicePrincipal,
}

/// One credential of one application (or service principal).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRow {
    pub application: String,
    pub holder: Holder,
    pub app_id: Uuid,
    pub object_id: Uuid,
    pub kind: CredentialKind,
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub end: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    /// The policy credential that keeps this application's secret, if any.
    pub enrolled_as: Option<String>,
    /// `vault/secret` holding the enrolled value, where known.
    pub key_vault: Option<String>,
    /// Created by the rotator (displayName marker).
    pub managed: bool,
}

/// What the policy (and Key Vault, where read) says about each application: which credential
/// keeps it and which password's value the vault holds. Bounded by the policy's size, not the
/// tenant's.
#[derive(Debug, Clone, Default)]
pub struct Enrolment {
    by_app_id: HashMap<Uuid, Enrolled>,
    by_object_id: HashMap<Uuid, Enrolled>,
    /// keyId of the password whose value is in Key Vault → `vault/secret`.
    in_vault: HashMap<Uuid, String>,
}

#[derive(Debug, Clone)]
struct Enrolled {
    name: String,
}

impl Enrolment {
    pub fn from_policy(policy: Option<&Policy>) -> Self {
        let mut e = Self::default();
        for c in policy.iter().flat_map(|p| p.credentials.iter()) {
            let v = Enrolled {
                name: c.name.clone(),
            };
            match c.application {
                AppRef::AppId(id) => e.by_app_id.insert(id, v),
                AppRef::ObjectId(id) => e.by_object_id.insert(id, v),
            };
        }
        e
    }

    /// Records that the value of password `key_id` is the current version of `vault/secret`.
    pub fn held_in_vault(&mut self, key_id: Uuid, vault_secret: String) {
        self.in_vault.insert(key_id, vault_secret);
    }

    fn of(&self, app: &AppState) -> Option<&Enrolled> {
        self.by_app_id
            .get(&app.app_id)
            .or_else(|| self.by_object_id.get(&app.object_id))
    }

    /// The policy credential keeping this application's secret, if any.
    pub fn credential_of(&self, app: &AppState) -> Option<&str> {
        self.of(app).map(|e| e.name.as_str())
    }
}

/// Whole days from `now` to `end`, rounded down: an hour past expiry is day -1, not 0.
pub fn days_left(end: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (end - now).num_seconds().div_euclid(86_400)
}

/// The rows for one application: its passwords, then its certificates. Certificates are never
/// enrolled (the rotator renews client secrets only).
pub fn rows_for_app(
    app: &AppState,
    certificates: &[CertificateInfo],
    enrolment: &Enrolment,
    now: DateTime<Utc>,
) -> Vec<InventoryRow> {
    rows_for(Holder::Application, app, certificates, enrolment, now)
}

/// The rows for one service principal (`sp.object_id` is the SP's id). Its credentials are
/// never the enrolled ones: the policy enrols application passwords.
pub fn rows_for_service_principal(
    sp: &AppState,
    certificates: &[CertificateInfo],
    now: DateTime<Utc>,
) -> Vec<InventoryRow> {
    rows_for(
        Holder::ServicePrincipal,
        sp,
        certificates,
        &Enrolment::default(),
        now,
    )
}

fn rows_for(
    holder: Holder,
    app: &AppState,
    certificates: &[CertificateInfo],
    enrolment: &Enrolment,
    now: DateTime<Utc>,
) -> Vec<InventoryRow> {
    let enrolled = enrolment.of(app);
    let base =
        |kind, key_id, display_name: &Option<String>, end: Option<DateTime<Utc>>| InventoryRow {
            application: app.display_name.clone(),
            holder,
            app_id: app.app_id,
            object_id: app.object_id,
            kind,
            key_id,
            display_name: display_name.clone(),
            end,
            days_left: end.map(|e| days_left(e, now)),
            enrolled_as: None,
            key_vault: None,
            managed: false,
        };
    let mut rows: Vec<InventoryRow> = app
        .passwords
        .iter()
        .map(|p| InventoryRow {
            enrolled_as: enrolled.map(|c| c.name.clone()),
            key_vault: enrolment.in_vault.get(&p.key_id).cloned(),
            managed: p
                .display_name
                .as_deref()
                .is_some_and(|d| d.starts_with(MARKER_PREFIX)),
            ..base(CredentialKind::Secret, p.key_id, &p.display_name, p.end)
        })
        .collect();
    rows.extend(certificates.iter().map(|c| {
        base(
            CredentialKind::Certificate,
            c.key_id,
            &c.display_name,
            c.end,
        )
    }));
    rows
}

/// Output formats of `secret-rotator report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Writes rows as they arrive.
pub struct RowWriter<W: std::io::Write> {
    out: W,
    format: Format,
    written: usize,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl<W: std::io::Write> RowWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            written: 0,
        }
    }

    pub fn header(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Table => writeln!(
                self.out,
                "{:<32} {:<36} {:<11} {:<36} {:<10} {:>9} {:<20} KEY VAULT",
                "APPLICATION", "APP ID", "KIND", "KEY ID", "EXPIRES", "DAYS LEFT", "ENROLLED AS",
            ),
            Format::Csv => writeln!(
                self.out,
                "application,holder,appId,objectId,kind,keyId,displayName,end,daysLeft,enrolledAs,keyVault,managed"
            ),
            Format::Json => write!(self.out, "["),
        }
    }

    pub fn row(&mut self, r: &InventoryRow) -> std::io::Result<()> {
        let kind = match r.kind {
            CredentialKind::Secret => "secret",
            CredentialKind::Certificate => "certificate",
        };
        // The table has no holder column: a service principal's credentials say so in KIND.
        let table_kind = match (r.kind, r.holder) {
            (_, Holder::Application) => kind,
            (CredentialKind::Secret, Holder::ServicePrincipal) => "sp secret",
            (CredentialKind::Certificate, Holder::ServicePrincipal) => "sp cert",
        };
        let holder = match r.holder {
            Holder::Application => "application",
            Holder::ServicePrincipal => "servicePrincipal",
        };
        match self.format {
            Format::Table => {
                let mut name = r.application.clone();
                if name.chars().count() > 32 {
                    name = name.chars().take(31).collect::<String>() + "…";
                }
                writeln!(
                    self.out,
                    "{:<32} {:<36} {:<11} {:<36} {:<10} {:>9} {:<20} {}",
                    name,
                    r.app_id,
                    table_kind,
                    r.key_id,
                    r.end
                        .map(|e| e.format("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.days_left
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.enrolled_as.as_deref().unwrap_or("-"),
                    r.key_vault.as_deref().unwrap_or("-")
                )
            }
            Format::Csv => writeln!(
                self.out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.application),
                holder,
                r.app_id,
                r.object_id,
                kind,
                r.key_id,
                csv_field(r.display_name.as_deref().unwrap_or("")),
                r.end.map(|e| e.to_rfc3339()).unwrap_or_default(),
                r.days_left.map(|d| d.to_string()).unwrap_or_default(),
                csv_field(r.enrolled_as.as_deref().unwrap_or("")),
                csv_field(r.key_vault.as_deref().unwrap_or("")),
                r.managed
            ),
            Format::Json => {
                if self.written > 0 {
                    write!(self.out, ",")?;
                }
                let v = serde_json::to_string(r).map_err(std::io::Error::other)?;
                write!(self.out, "\n{v}")
            }
        }?;
        self.written += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        if self.format == Format::Json {
            writeln!(self.out, "\n]")?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What an AADSTS error line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadstsLine {
    pub code: u64,
    /// The application named in the message (`app '...'`, `identifier '...'`), if any.
    pub app_id: Option<Uuid>,
    /// The tenant named (AADSTS90002), if any.
    pub tenant: Option<String>,
}

impl AadstsLine {
    /// Finds the first `AADSTS<digits>` and the GUIDs around it. `None` when there is no code.
    pub fn parse(text: &str) -> Option<Self> {
        let at = text.find("AADSTS")?;
        let digits: String = text[at + 6..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let code = digits.parse().ok()?;
        let after = &text[at..];
        let quoted: Vec<&str> = after.split('\'').skip(1).step_by(2).collect();
        let app_id = quoted
            .iter()
            .find_map(|q| Uuid::parse_str(q).ok())
            .or_else(|| {
                text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                    .find_map(|w| Uuid::parse_str(w).ok())
            });
        let tenant = if code == 90002 {
            quoted.first().map(|s| s.to_string())
        } else {
            None
        };
        Some(Self {
            code,
            app_id: if code == 90002 { None } else { app_id },
            tenant,
        })
    }

    /// What the code means, in an operator's words.
    pub fn meaning(&self) -> &'static str {
        match self.code {
            7000222 => "the client secret the application sent has expired",
            7000215 => {
                "the client secret the application sent is wrong (not any current secret's value; perhaps the secret's ID was used, or it was replaced)"
            }
            700016 => "no application with that client id exists in the tenant the request went to",
            90002 => "the tenant does not exist (wrong tenant id or wrong cloud)",
            _ => "an Entra sign-in error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ezsign_log_line() {
        let l = AadstsLine::parse("2022-11-24 10:31:40.391 [main] ERROR EzSignLog - Max retries 3 times exceeded. Error Details: AADSTS7000222: The provided client secret keys for app '7412f649-8e14-471f-bfc1-733b36a42705' are expired").unwrap();
        assert_eq!(l.code, 7000222);
        assert_eq!(
            l.app_id,
            Some(Uuid::parse_str("7412f649-8e14-471f-bfc1-733b36a42705").unwrap())
        );
    }

    #[test]
    fn parses_unknown_tenant_and_unknown_app() {
        let l = AadstsLine::parse("AADSTS90002: Tenant 'contoso.example' not found.").unwrap();
        assert_eq!(
            (l.code, l.tenant.as_deref(), l.app_id),
            (90002, Some("contoso.example"), None)
        );
        let l = AadstsLine::parse("AADSTS700016: Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'x'").unwrap();
        assert_eq!(l.code, 700016);
        assert!(l.app_id.is_some());
        assert!(AadstsLine::parse("no code here").is_none());
        assert!(AadstsLine::parse("AADSTS").is_none());
    }

    #[test]
    fn csv_escapes_commas_and_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
