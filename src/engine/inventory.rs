//! Tenant inventory and diagnosis (the engine's inventory-scan use case): every credential of
//! every application the rotator can see, whether anyone rotates it, and what an AADSTS error
//! line points at.
//!
//! Where things live: [`InventoryRow`] and [`rows_for_app`] (one row per credential, told
//! enrolled or not by an [`Enrolment`]); [`InventoryScan`], the one tenant scan behind
//! `secret-rotator report`, the timer pass's warnings and `Status`, streamed page by page
//! (Graph's `@odata.nextLink`) so 100,000 applications cost the memory of one page; [`warns`],
//! the rule for "expiring and nobody rotates it"; [`SoonestUnenrolled`], `Status`'s bounded list;
//! [`RowWriter`], the report's table/CSV/JSON; [`AadstsLine`], the error-line parser `diagnose`
//! starts from.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{CertificateInfo, ListedApp};
use crate::engine::ports::{AzurePorts, Listing, ListingPager, PortError};
use crate::planner::{AppState, PasswordMarker};
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
    /// Whether this very credential is kept by the rotator: the password whose value is in the
    /// enrolled Key Vault secret, the one a rotation replaced, or one the rotator created
    /// (`enrolledAs` names the application's policy entry even for its other secrets). `null`
    /// when it cannot be told: the application is enrolled but which password its vault holds
    /// was not established.
    pub enrolled: Option<bool>,
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
    /// Certificate credentials of the policy, by application: the keys they added (their
    /// marker) are the rotator's to renew and remove, never "nobody rotates".
    certificates: Vec<(AppRef, String)>,
}

#[derive(Debug, Clone)]
struct Enrolled {
    name: String,
    /// keyIds the rotator keeps for this application: the one whose value is in Key Vault and
    /// the one the last rotation replaced. `None` until observed (then nothing can be told).
    kept: Option<Vec<Uuid>>,
}

impl Enrolment {
    pub fn from_policy(policy: Option<&Policy>) -> Self {
        let mut e = Self::default();
        for c in policy.iter().flat_map(|p| p.credentials.iter()) {
            let v = Enrolled {
                name: c.name.clone(),
                kept: None,
            };
            match c.application {
                AppRef::AppId(id) => e.by_app_id.insert(id, v),
                AppRef::ObjectId(id) => e.by_object_id.insert(id, v),
            };
        }
        for c in policy.iter().flat_map(|p| p.certificates.iter()) {
            e.certificates.push((c.application, c.name.clone()));
        }
        e
    }

    /// The policy's certificate credential that added key `display_name` to `app`, if any.
    fn certificate_of(&self, app: &AppState, display_name: Option<&str>) -> Option<&str> {
        let name = display_name?;
        self.certificates
            .iter()
            .find(|(a, c)| {
                let same = match a {
                    AppRef::AppId(id) => *id == app.app_id,
                    AppRef::ObjectId(id) => *id == app.object_id,
                };
                same && PasswordMarker::is_for(name, c)
            })
            .map(|(_, c)| c.as_str())
    }

    /// Records that the value of password `key_id` is the current version of `vault/secret`.
    pub fn held_in_vault(&mut self, key_id: Uuid, vault_secret: String) {
        self.in_vault.insert(key_id, vault_secret);
    }

    /// Records what the engine observed of policy credential `credential`: the keyId whose value
    /// its Key Vault secret holds (`None`: not established) and the one the last rotation
    /// replaced. Without this call every password of the application counts as undetermined.
    pub fn observed(
        &mut self,
        credential: &str,
        current: Option<Uuid>,
        previous: Option<Uuid>,
        vault_secret: String,
    ) {
        let Some(current) = current else { return };
        self.in_vault.insert(current, vault_secret);
        let kept: Vec<Uuid> = std::iter::once(current).chain(previous).collect();
        for e in self
            .by_app_id
            .values_mut()
            .chain(self.by_object_id.values_mut())
            .filter(|e| e.name == credential)
        {
            e.kept = Some(kept.clone());
        }
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

/// The rows for one application: its passwords, then its certificates. A certificate is
/// enrolled when a certificate credential of the policy added it (its marker).
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
            enrolled: Some(false),
        };
    let mut rows: Vec<InventoryRow> = app
        .passwords
        .iter()
        .map(|p| {
            let managed = p
                .display_name
                .as_deref()
                .is_some_and(PasswordMarker::is_rotators);
            InventoryRow {
                enrolled_as: enrolled.map(|c| c.name.clone()),
                key_vault: enrolment.in_vault.get(&p.key_id).cloned(),
                managed,
                enrolled: password_enrolled(enrolled, p.key_id, managed),
                ..base(CredentialKind::Secret, p.key_id, &p.display_name, p.end)
            }
        })
        .collect();
    rows.extend(certificates.iter().map(|c| {
        let row = base(
            CredentialKind::Certificate,
            c.key_id,
            &c.display_name,
            c.end,
        );
        let ours = match holder {
            Holder::Application => enrolment.certificate_of(app, c.display_name.as_deref()),
            Holder::ServicePrincipal => None,
        };
        match ours {
            Some(name) => InventoryRow {
                enrolled_as: Some(name.to_string()),
                managed: true,
                enrolled: Some(true),
                ..row
            },
            None => row,
        }
    }));
    rows
}

/// Whether one password of an application is kept by the rotator. A password the rotator
/// created (marker) on an enrolled application is its own to remove; on an application no
/// longer enrolled, nobody keeps it any more.
fn password_enrolled(enrolled: Option<&Enrolled>, key_id: Uuid, managed: bool) -> Option<bool> {
    let Some(e) = enrolled else {
        return Some(false);
    };
    if managed {
        return Some(true);
    }
    e.kept.as_ref().map(|kept| kept.contains(&key_id))
}

/// The selection rule of the "expiring, not enrolled" notification: a credential nobody rotates
/// (`enrolled == Some(false)`: an undetermined one is left to its enrolled credential's own
/// status) that expires within `days` days and has not expired yet. An expired credential is
/// not messaged: it cannot be renewed any more, only replaced, and whatever used it has already
/// failed (`diagnose` explains the AADSTS7000222 it causes); `Status` still lists it. A
/// credential without an end date never expires. `days == 0` disables the notification.
pub fn warns(row: &InventoryRow, now: DateTime<Utc>, days: u32) -> bool {
    days > 0
        && row.enrolled == Some(false)
        && row
            .end
            .is_some_and(|end| end > now && end <= now + chrono::Duration::days(i64::from(days)))
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

/// A CSV cell. Text from Azure (display names anyone who registers an app chooses) that a
/// spreadsheet would run as a formula — a cell starting with `=`, `+`, `-`, `@`, tab or carriage
/// return — gets a leading `'` and is quoted, as OWASP's "CSV Injection" guidance says.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Text for the terminal table: control characters (escape sequences, newlines) become spaces.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
                let mut name = printable(&r.application);
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
                    printable(r.enrolled_as.as_deref().unwrap_or("-")),
                    printable(r.key_vault.as_deref().unwrap_or("-"))
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

// ---------------------------------------------------------------- scanning

/// How a scan lists.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Only the applications the identity owns, without trying the full list first.
    pub owned_only: bool,
    /// Applications per Graph page (1-999).
    pub page_size: u32,
    /// Stop before fetching another page after this instant (the timer pass's budget); the
    /// summary then says the scan is incomplete.
    pub deadline: Option<std::time::Instant>,
}

/// What a scan covered. Serialized into the pass report and `Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    pub applications: usize,
    /// Service principals scanned for credentials of their own (0 when not listed).
    pub service_principals: usize,
    pub rows: usize,
    pub pages: usize,
    /// True when only owned applications were listed; `owned_only_reason` says why.
    pub owned_only: bool,
    pub owned_only_reason: Option<String>,
    /// False when the deadline stopped the scan before the last page.
    pub complete: bool,
}

enum ScanPhase {
    Start,
    Applications(Box<dyn ListingPager>),
    ServicePrincipals(Box<dyn ListingPager>, usize),
    Done,
}

/// The one tenant scan behind `secret-rotator report`, the timer pass's notifications and
/// `Status`: every application the identity can read (or, without a directory-wide read role,
/// the ones it owns: its service principal's `ownedObjects`, the `oid` of its own Graph token),
/// then the credentials service principals hold themselves — as [`InventoryRow`]s, one Graph
/// page at a time. Callers pull pages with [`InventoryScan::next_page`] and drop each before the
/// next, so memory is one page whatever the tenant's size; what the scan has to say about
/// itself (owned-only and why) is in [`InventoryScan::take_notes`].
pub struct InventoryScan<'a> {
    azure: &'a dyn AzurePorts,
    enrolment: &'a Enrolment,
    now: DateTime<Utc>,
    opts: ScanOptions,
    phase: ScanPhase,
    summary: ScanSummary,
    notes: Vec<String>,
}

impl<'a> InventoryScan<'a> {
    pub fn new(
        azure: &'a dyn AzurePorts,
        enrolment: &'a Enrolment,
        opts: ScanOptions,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            azure,
            enrolment,
            now,
            opts,
            phase: ScanPhase::Start,
            summary: ScanSummary {
                owned_only: opts.owned_only,
                owned_only_reason: opts
                    .owned_only
                    .then(|| "only the owned applications were asked for".to_string()),
                ..Default::default()
            },
            notes: Vec::new(),
        }
    }

    /// What the scan has covered so far (all of it once `next_page` has returned `None`).
    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }

    /// Lines about the scan itself, in order, since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn owned_only(&mut self, reason: String) {
        self.notes.push(reason.clone());
        self.summary.owned_only = true;
        self.summary.owned_only_reason = Some(reason);
    }

    async fn owned_pager(&mut self) -> Result<Box<dyn ListingPager>, PortError> {
        let who = self.azure.caller_identity().await?;
        // A user's token (an operator's Azure CLI login) has no app roles: the user's own.
        if who.roles.is_none() {
            self.notes.push(format!(
                "listing the applications owned by the signed-in user {} (me/ownedObjects)",
                who.object_id
            ));
            return Ok(self.azure.list(Listing::OwnedByMe, self.opts.page_size));
        }
        self.notes.push(format!(
            "listing the applications owned by {} (servicePrincipals/{}/ownedObjects)",
            who.object_id, who.object_id
        ));
        Ok(self
            .azure
            .list(Listing::OwnedBy(who.object_id), self.opts.page_size))
    }

    async fn start(&mut self) -> Result<Box<dyn ListingPager>, PortError> {
        if !self.summary.owned_only
            && let Ok(who) = self.azure.caller_identity().await
            && !who.can_read_all_applications()
        {
            self.owned_only(
                "the identity lacks Application.Read.All (its token has no role that reads every application); only the applications it owns are listed".into(),
            );
        }
        if self.summary.owned_only {
            self.owned_pager().await
        } else {
            Ok(self
                .azure
                .list(Listing::AllApplications, self.opts.page_size))
        }
    }

    fn out_of_time(&self) -> bool {
        self.opts
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// The rows of the next page (possibly none), or `None` when the scan is over: every page
    /// read, or the deadline reached (`summary().complete` tells which).
    pub async fn next_page(&mut self) -> Result<Option<Vec<InventoryRow>>, PortError> {
        loop {
            if !matches!(self.phase, ScanPhase::Done) && self.out_of_time() {
                self.notes.push(format!(
                    "stopped at the deadline after {} page(s); the rest waits for the next scan",
                    self.summary.pages
                ));
                self.phase = ScanPhase::Done;
                return Ok(None);
            }
            match std::mem::replace(&mut self.phase, ScanPhase::Done) {
                ScanPhase::Done => return Ok(None),
                ScanPhase::Start => self.phase = ScanPhase::Applications(self.start().await?),
                ScanPhase::Applications(mut pager) => match pager.next_page().await {
                    Ok(Some(page)) => {
                        self.phase = ScanPhase::Applications(pager);
                        return Ok(Some(self.rows_of(&page, Holder::Application)));
                    }
                    Ok(None) => self.phase = self.after_applications(),
                    // Only the first page can be refused for lack of a role; a token that
                    // claims the role can still be refused (role not consented, or removed).
                    Err(PortError::AccessDenied(m))
                        if self.summary.pages == 0 && !self.summary.owned_only =>
                    {
                        self.owned_only(format!(
                            "Graph refused to list every application ({m}): the identity lacks Application.Read.All; falling back to the applications it owns"
                        ));
                        self.phase = ScanPhase::Applications(self.owned_pager().await?);
                    }
                    Err(e) => return Err(e),
                },
                ScanPhase::ServicePrincipals(mut pager, pages) => match pager.next_page().await {
                    Ok(Some(page)) => {
                        self.phase = ScanPhase::ServicePrincipals(pager, pages + 1);
                        return Ok(Some(self.rows_of(&page, Holder::ServicePrincipal)));
                    }
                    Ok(None) => {
                        self.summary.complete = true;
                        return Ok(None);
                    }
                    Err(PortError::AccessDenied(m)) if pages == 0 => {
                        self.notes.push(format!(
                            "service principals' own credentials are not listed: {m}"
                        ));
                        self.summary.complete = true;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// One page's rows, counted.
    fn rows_of(&mut self, page: &[ListedApp], holder: Holder) -> Vec<InventoryRow> {
        self.summary.pages += 1;
        let mut rows = Vec::new();
        for listed in page {
            let (app, certs) = (&listed.app, &listed.certificates);
            rows.extend(match holder {
                Holder::Application => {
                    self.summary.applications += 1;
                    rows_for_app(app, certs, self.enrolment, self.now)
                }
                Holder::ServicePrincipal => {
                    self.summary.service_principals += 1;
                    rows_for_service_principal(app, certs, self.now)
                }
            });
        }
        self.summary.rows += rows.len();
        rows
    }

    /// After the applications: the credentials service principals hold themselves (SAML
    /// signing certificates), which needs the same directory-wide read.
    fn after_applications(&mut self) -> ScanPhase {
        if self.summary.owned_only {
            self.notes.push(
                "service principals' own credentials are not listed (that needs Application.Read.All)"
                    .into(),
            );
            self.summary.complete = true;
            ScanPhase::Done
        } else {
            ScanPhase::ServicePrincipals(
                self.azure
                    .list(Listing::ServicePrincipals, self.opts.page_size),
                0,
            )
        }
    }
}

/// `Status`'s inventory of credentials nobody rotates: bounded, so a tenant of 100,000
/// applications answers with at most `limit` rows — the ones expiring soonest (expired ones
/// first, most days past first; never-expiring ones last) — and a count of the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnenrolledInventory {
    /// What was scanned, and whether only owned applications were visible (and why).
    pub scan: ScanSummary,
    /// Why the scan failed part way, when it did (the rows are what was read before).
    pub problem: Option<String>,
    /// Credentials not enrolled, in all.
    pub unenrolled: usize,
    /// Credentials of enrolled applications whose vault's keyId was not established: neither
    /// counted nor listed as unenrolled.
    pub undetermined: usize,
    pub limit: usize,
    /// The `limit` soonest to expire, by days left (`enrolledAs` set: the application is
    /// enrolled, this credential is another one than the rotator keeps).
    pub listed: Vec<InventoryRow>,
    /// Unenrolled credentials beyond `limit`, not listed.
    pub not_listed: usize,
    pub note: String,
}

/// Keeps the `limit` unenrolled rows expiring soonest out of a stream of pages: memory is
/// bounded by `limit`, not the tenant.
#[derive(Debug)]
pub struct SoonestUnenrolled {
    limit: usize,
    /// Max-heap on (end, keyId): the top is the row to drop first.
    heap: std::collections::BinaryHeap<Soonest>,
    unenrolled: usize,
    undetermined: usize,
}

#[derive(Debug)]
struct Soonest(InventoryRow);

impl Soonest {
    /// Never-expiring credentials sort after every dated one.
    fn key(&self) -> (bool, Option<DateTime<Utc>>, Uuid) {
        (self.0.end.is_none(), self.0.end, self.0.key_id)
    }
}
impl PartialEq for Soonest {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl Eq for Soonest {}
impl PartialOrd for Soonest {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Soonest {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key().cmp(&o.key())
    }
}

impl SoonestUnenrolled {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: std::collections::BinaryHeap::with_capacity(limit + 1),
            unenrolled: 0,
            undetermined: 0,
        }
    }

    pub fn add(&mut self, row: &InventoryRow) {
        match row.enrolled {
            Some(true) => {}
            None => self.undetermined += 1,
            Some(false) => {
                self.unenrolled += 1;
                self.heap.push(Soonest(row.clone()));
                if self.heap.len() > self.limit {
                    self.heap.pop();
                }
            }
        }
    }

    pub fn finish(self, scan: ScanSummary, problem: Option<String>) -> UnenrolledInventory {
        let listed: Vec<InventoryRow> = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|s| s.0)
            .collect();
        let not_listed = self.unenrolled - listed.len();
        let note = format!(
            "{} credential(s) nobody rotates{}; {} listed (at most {}, soonest to expire first){}",
            self.unenrolled,
            if scan.owned_only {
                " among the applications the rotator owns"
            } else {
                ""
            },
            listed.len(),
            self.limit,
            if not_listed > 0 {
                format!("; {not_listed} more not listed (secret-rotator report lists them all)")
            } else {
                String::new()
            }
        );
        UnenrolledInventory {
            scan,
            problem,
            unenrolled: self.unenrolled,
            undetermined: self.undetermined,
            limit: self.limit,
            listed,
            not_listed,
            note,
        }
    }
}

/// What an AADSTS error line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadstsLine {
    pub code: u64,
    /// The application the message names (`for app '…'`, `added to app '…'`, `Application with
    /// identifier '…'`), if any. Never another GUID of the line: Trace ID, Correlation ID and
    /// tenant ids identify the request or the directory, not the application.
    pub app_id: Option<Uuid>,
    /// The tenant named (AADSTS90002), if any.
    pub tenant: Option<String>,
}

/// The phrases Entra puts right before the application id, in the wordings of 7000222
/// (`for app '…' are expired`), 7000215 (`for a secret added to app '…'`) and 700016
/// (`Application with identifier '…'`); and the request parameter some logs print.
const APP_ANCHORS: [&str; 4] = ["app ", "application ", "identifier ", "client_id="];

impl AadstsLine {
    /// Finds the first `AADSTS<digits>` and the application it names. `None` when there is no
    /// code. The line may come from any client library: quotes as `'`, JSON-escaped `\u0027`,
    /// HTML `&#39;`, or line breaks written as `\r\n`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = unescape(text);
        let at = text.find("AADSTS")?;
        let digits: String = text[at + 6..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let code = digits.parse().ok()?;
        let after = &text[at..];
        let tenant = (code == 90002)
            .then(|| after.split('\'').nth(1).map(str::to_string))
            .flatten();
        Some(Self {
            code,
            app_id: if code == 90002 {
                None
            } else {
                named_app(after)
            },
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

/// The quotes and line breaks of a message as its logger escaped them, back to plain text.
fn unescape(text: &str) -> String {
    let mut t = text.to_string();
    for (from, to) in [
        ("\\\\u0027", "'"),
        ("\\u0027", "'"),
        ("\\u0022", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&apos;", "'"),
        ("&quot;", "\""),
        ("\\r\\n", " "),
        ("\\n", " "),
        ("\\\"", "\""),
    ] {
        t = t.replace(from, to);
    }
    t
}

/// The GUID right after one of [`APP_ANCHORS`] (quoted or not), first in the text.
fn named_app(text: &str) -> Option<Uuid> {
    let lower = text.to_ascii_lowercase();
    let mut found: Option<(usize, Uuid)> = None;
    for anchor in APP_ANCHORS {
        for (i, _) in lower.match_indices(anchor) {
            let rest = text[i + anchor.len()..].trim_start_matches(['\'', '"', '‘', '’']);
            let candidate: String = rest.chars().take(36).collect();
            if let Ok(id) = Uuid::parse_str(&candidate)
                && found.is_none_or(|(at, _)| i < at)
            {
                found = Some((i, id));
            }
        }
    }
    found.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::PasswordInfo;

    #[test]
    fn parses_the_ezsign_log_line() {
        let l = AadstsLine::parse("2022-11-24 10:31:40.391 [main] ERROR EzSignLog - Max retries 3 times exceeded. Error Details: AADSTS7000222: The provided client secret keys for app '7412f649-8e14-471f-bfc1-733b36a42705' are expired").unwrap();
        assert_eq!(l.code, 7000222);
        assert_eq!(
            l.app_id,
            Some(Uuid::parse_str("7412f649-8e14-471f-bfc1-733b36a42705").unwrap())
        );
    }

    /// Real line shapes, one per client library, from public issue threads (GUIDs as posted).
    /// `(source, line, the application it names)`.
    const REAL_LINES: &[(&str, &str, Option<&str>)] = &[
        (
            "Azure.Identity + MSAL.NET (dotnet/sign#849)",
            "Azure.Identity.AuthenticationFailedException (0x80131500): ClientSecretCredential authentication failed: ---> Microsoft.Identity.Client.MsalServiceException (0x80131500): A configuration issue is preventing authentication - check the error message from the server for details. Original exception: AADSTS7000222: The provided client secret keys for app 'ccc25fb8-d83b-4225-b4b7-5f31bfb007be' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds. Trace ID: de577a4f-a611-44e8-94e6-5ca7955a3800 Correlation ID: b1f881fe-810c-4731-a772-fa920ee90430 Timestamp: 2025-04-10 13:07:42Z",
            Some("ccc25fb8-d83b-4225-b4b7-5f31bfb007be"),
        ),
        (
            "the dotnet/sign#849 line in a .NET JSON log (System.Text.Json escapes ' as \\u0027)",
            r#"{"Timestamp":"2025-04-10T13:07:42Z","Level":"Error","Message":"ClientSecretCredential authentication failed: AADSTS7000222: The provided client secret keys for app \u0027ccc25fb8-d83b-4225-b4b7-5f31bfb007be\u0027 are expired. Trace ID: de577a4f-a611-44e8-94e6-5ca7955a3800 Correlation ID: b1f881fe-810c-4731-a772-fa920ee90430 Timestamp: 2025-04-10 13:07:42Z"}"#,
            Some("ccc25fb8-d83b-4225-b4b7-5f31bfb007be"),
        ),
        (
            "MSAL Java, pre-2022 wording without an app (active-directory-dotnetcore-daemon-v2#87)",
            "Caused by: com.microsoft.aad.msal4j.MsalServiceException: AADSTS7000222: The provided client secret keys are expired. Visit the Azure Portal to create new keys for your app, or consider using certificate credentials for added security: https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials\nTrace ID: 7fcf7cbe-ce35-44fa-93f8-b2c7b6221d00\nCorrelation ID: b1ea1fd6-59c2-4cb7-9baa-eecae5452848\nTimestamp: 2020-08-18 11:19:27Z",
            None,
        ),
        (
            "MSAL Python (ms-identity-python-webapp#67)",
            "invalid_client AADSTS7000222: The provided client secret keys are expired. Visit the Azure Portal to create new keys for your app, or consider using certificate credentials for added security: https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials Trace ID: fff84e51-e60e-4599-bdc6-6d6685207601 Correlation ID: 83ddadd9-4d95-44f4-99e5-36a2401e8faf Timestamp: 2021-06-19 15:14:59Z",
            None,
        ),
        (
            "pre-2022 7000215 (contoso-airlines-teams-sample#11)",
            "AADSTS7000215: Invalid client secret is provided. Trace ID: 02f6f1c8-78b8-44f9-9576-66a55b4aa100 Correlation ID: 52f513ad-39d9-4eb4-b1a9-281571228968 Timestamp: 2021-09-13 23:21:24Z",
            None,
        ),
        (
            "JS token response body, escaped \\r\\n (microsoft-365-agents-toolkit#8621)",
            r#"Get Token request returned http error: 401 and server response: {"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'a8fdfbd0-da97-42d9-8f1a-fd6a7cb650b4'.\r\nTrace ID: 6f6c4645-0202-4486-b625-fa957dfc4700\r\nCorrelation ID: 5fc87507-4086-4e77-b415-cee677eb232e\r\nTimestamp: 2023-05-06 06:03:00Z","error_codes":[7000215],"trace_id":"6f6c4645-0202-4486-b625-fa957dfc4700","correlation_id":"5fc87507-4086-4e77-b415-cee677eb232e"}"#,
            Some("a8fdfbd0-da97-42d9-8f1a-fd6a7cb650b4"),
        ),
        (
            "msal-node errorMessage, app id blanked by the reporter (AzureAD-LDAP-wrapper#45)",
            r#"errorMessage: "7000215 - [2023-03-05 22:32:01Z]: AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'appid'.\r\n" +"#,
            None,
        ),
        (
            "pre-2022 7000215 in a JSON log line (azure-iot-connected-factory#77)",
            r#""RDX CreateQueryClient failed: AADSTS7000215: Invalid client secret is provided.Trace ID: 34c284d3-8e58-4a84-95e7-820392af3b00Correlation ID: 2b751893-a025-405e-9093-a6924064c166Timestamp: 2020-07-20 00:50:57Z---> {\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret is provided.\\r\\nTrace ID: 34c284d3-8e58-4a84-95e7-820392af3b00\\r\\nCorrelation ID: 2b751893-a025-405e-9093-a6924064c166\"}""#,
            None,
        ),
        (
            "Logic Apps connector (coe-starter-kit#10973), quotes HTML-escaped as a web page shows them",
            "error getting AD OAuth token: &#39;AADSTS7000222: The provided client secret keys for app &#39;7d7f7e25-9674-47c8-8546-c6d9d3628d23&#39; are expired. Trace ID: 4e7392f8-e5a3-4d11-a2fd-f74298131400 Correlation ID: 244630a0-fcac-4438-b343-26edd5cbeb89&#39;.",
            Some("7d7f7e25-9674-47c8-8546-c6d9d3628d23"),
        ),
        (
            "seed 000 (EzSign server log)",
            "2022-11-24 10:31:40.391 [main] ERROR EzSignLog - Max retries 3 times exceeded. Error Details: AADSTS7000222: The provided client secret keys for app '7412f649-8e14-471f-bfc1-733b36a42705' are expired",
            Some("7412f649-8e14-471f-bfc1-733b36a42705"),
        ),
        (
            "seed 003 (troubleshooting guide)",
            "AADSTS7000222: InvalidClientSecretExpiredKeysProvided - The provided client secret keys are expired. Create new keys for your app, or consider using certificate credentials for added security:https://aka.ms/certCreds",
            None,
        ),
        (
            "700016 names the app and the directory",
            "AADSTS700016: Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'd10c2e35-390b-4343-9fb3-36524a35717c'.",
            Some("11111111-2222-3333-4444-555555555555"),
        ),
    ];

    #[test]
    fn names_the_application_each_client_library_writes_and_never_a_trace_id() {
        for (source, line, app) in REAL_LINES {
            let parsed = AadstsLine::parse(line).unwrap_or_else(|| panic!("{source}: no code"));
            assert_eq!(
                parsed.app_id,
                app.map(|a| Uuid::parse_str(a).unwrap()),
                "{source}"
            );
        }
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

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn password(key: u128, name: Option<&str>, end: Option<DateTime<Utc>>) -> PasswordInfo {
        PasswordInfo {
            key_id: id(key),
            display_name: name.map(str::to_string),
            hint: None,
            start: None,
            end,
        }
    }

    fn app(app_id: u128, passwords: Vec<PasswordInfo>) -> AppState {
        AppState {
            object_id: id(app_id + 1000),
            app_id: id(app_id),
            display_name: format!("app {app_id}"),
            passwords,
        }
    }

    fn policy_enrolling(app_id: u128) -> Policy {
        crate::policy::parse(
            "policy.json",
            &serde_json::json!({
                "credentials": [{
                    "name": "kept",
                    "application": { "appId": id(app_id).to_string() },
                    "keyVault": { "vault": "kv-kept", "secret": "s" }
                }]
            })
            .to_string(),
        )
        .expect("valid policy")
    }

    fn row(enrolled: Option<bool>, end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> InventoryRow {
        let mut r = rows_for_app(
            &app(1, vec![password(7, None, end)]),
            &[],
            &Enrolment::default(),
            now,
        )
        .remove(0);
        r.enrolled = enrolled;
        r
    }

    #[test]
    fn warns_about_unenrolled_credentials_expiring_within_the_window_only() {
        let now = t("2026-11-22T02:00:00Z");
        let days = |d: i64| Some(now + chrono::Duration::days(d));
        let unenrolled = |end| row(Some(false), end, now);
        assert!(warns(&unenrolled(days(5)), now, 30));
        assert!(warns(&unenrolled(days(30)), now, 30), "the last day counts");
        assert!(!warns(&unenrolled(days(31)), now, 30));
        assert!(
            warns(
                &unenrolled(Some(now + chrono::Duration::minutes(5))),
                now,
                30
            ),
            "expires within the hour"
        );
        assert!(
            !warns(&unenrolled(Some(now - chrono::Duration::hours(1))), now, 30),
            "expired: not messaged"
        );
        assert!(!warns(&unenrolled(None), now, 30), "never expires");
        assert!(!warns(&unenrolled(days(5)), now, 0), "0 turns it off");
        assert!(!warns(&row(Some(true), days(5), now), now, 30), "enrolled");
        assert!(
            !warns(&row(None, days(5), now), now, 30),
            "undetermined: left to the enrolled credential's own status"
        );
        let mut cert = unenrolled(days(5));
        cert.kind = CredentialKind::Certificate;
        assert!(warns(&cert, now, 30), "certificates expire too");
    }

    #[test]
    fn enrolled_means_the_vaults_password_the_replaced_one_or_the_rotators_own() {
        let now = t("2026-11-22T02:00:00Z");
        let end = Some(t("2026-12-01T00:00:00Z"));
        let policy = policy_enrolling(1);
        let kept = app(
            1,
            vec![
                password(10, Some("current"), end),
                password(11, Some("replaced"), end),
                password(12, Some("portal test"), end),
                password(13, Some("secret-rotator:kept:2026-11-01"), end),
            ],
        );
        let flags = |e: &Enrolment| -> Vec<Option<bool>> {
            rows_for_app(&kept, &[], e, now)
                .iter()
                .map(|r| r.enrolled)
                .collect()
        };
        let mut e = Enrolment::from_policy(Some(&policy));
        // Before the vault is observed only the rotator's own password can be told.
        assert_eq!(flags(&e), [None, None, None, Some(true)]);
        e.observed("kept", None, None, "kv-kept/s".into());
        assert_eq!(flags(&e), [None, None, None, Some(true)], "unknown keyId");
        e.observed("kept", Some(id(10)), Some(id(11)), "kv-kept/s".into());
        assert_eq!(flags(&e), [Some(true), Some(true), Some(false), Some(true)]);
        let rows = rows_for_app(&kept, &[], &e, now);
        assert_eq!(rows[0].key_vault.as_deref(), Some("kv-kept/s"));
        assert!(
            rows.iter()
                .all(|r| r.enrolled_as.as_deref() == Some("kept"))
        );

        // Another application: nothing of it is enrolled, the rotator's marker included (its
        // policy entry is gone), nor its certificates.
        let other = app(
            2,
            vec![password(20, Some("secret-rotator:gone:2026-01-01"), end)],
        );
        let cert = CertificateInfo {
            key_id: id(21),
            display_name: None,
            start: None,
            end,
        };
        let rows = rows_for_app(&other, std::slice::from_ref(&cert), &e, now);
        assert_eq!(
            rows.iter().map(|r| r.enrolled).collect::<Vec<_>>(),
            [Some(false), Some(false)]
        );
        let sp = rows_for_service_principal(&kept, &[cert], now);
        assert!(sp.iter().all(|r| r.enrolled == Some(false)));
    }

    #[test]
    fn keys_a_certificate_credential_added_are_enrolled_and_others_are_not() {
        let now = t("2026-11-22T02:00:00Z");
        let end = Some(t("2026-12-01T00:00:00Z"));
        let policy = crate::policy::parse(
            "policy.json",
            &serde_json::json!({"credentials": [{
                "type": "certificate", "name": "c1",
                "application": {"appId": id(1).to_string()},
                "certificate": {"vault": "kv-c1", "name": "c1"}
            }]})
            .to_string(),
        )
        .unwrap();
        let e = Enrolment::from_policy(Some(&policy));
        let cert = |key: u128, name: &str| CertificateInfo {
            key_id: id(key),
            display_name: Some(name.into()),
            start: None,
            end,
        };
        let certs = [
            cert(30, "secret-rotator:c1:2026-11-01"),
            cert(31, "CN=someone else's"),
            cert(32, "secret-rotator:c10:2026-11-01"),
        ];
        let rows = rows_for_app(&app(1, vec![]), &certs, &e, now);
        let flags: Vec<_> = rows.iter().map(|r| (r.enrolled, r.managed)).collect();
        assert_eq!(
            flags,
            [
                (Some(true), true),
                (Some(false), false),
                (Some(false), false)
            ]
        );
        assert_eq!(rows[0].enrolled_as.as_deref(), Some("c1"));
        // Another application's key with the same marker is not this credential's.
        let other = rows_for_app(&app(2, vec![]), &certs[..1], &e, now);
        assert_eq!(other[0].enrolled, Some(false));
    }

    #[test]
    fn status_inventory_keeps_the_soonest_within_its_limit() {
        let now = t("2026-11-22T02:00:00Z");
        let mut soonest = SoonestUnenrolled::new(200);
        // 1,000 unenrolled credentials in a scrambled order, days left -100..900, plus ones
        // that never expire, enrolled ones and undetermined ones.
        for i in 0..1000i64 {
            let d = (i * 7919) % 1000 - 100;
            soonest.add(&row(
                Some(false),
                Some(now + chrono::Duration::days(d)),
                now,
            ));
        }
        for _ in 0..3 {
            soonest.add(&row(Some(false), None, now));
            soonest.add(&row(Some(true), Some(now), now));
            soonest.add(&row(None, Some(now), now));
        }
        let inv = soonest.finish(ScanSummary::default(), None);
        assert_eq!((inv.unenrolled, inv.undetermined), (1003, 3));
        assert_eq!(
            (inv.listed.len(), inv.not_listed, inv.limit),
            (200, 803, 200)
        );
        let days: Vec<i64> = inv.listed.iter().map(|r| r.days_left.unwrap()).collect();
        assert_eq!(
            days,
            (-100..100).collect::<Vec<_>>(),
            "the 200 soonest, sorted"
        );
        assert!(inv.note.contains("803 more not listed"), "{}", inv.note);

        // Fewer than the limit: all of them, never-expiring last.
        let mut few = SoonestUnenrolled::new(200);
        few.add(&row(Some(false), None, now));
        few.add(&row(
            Some(false),
            Some(now + chrono::Duration::days(3)),
            now,
        ));
        let inv = few.finish(ScanSummary::default(), None);
        assert_eq!(
            inv.listed.iter().map(|r| r.days_left).collect::<Vec<_>>(),
            [Some(3), None]
        );
        assert_eq!(inv.not_listed, 0);
    }

    #[test]
    fn csv_escapes_commas_and_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    /// Was: `=HYPERLINK(...)` and `@SUM(...)` display names went into the CSV as formulas.
    #[test]
    fn csv_cells_never_start_a_formula() {
        for attack in [
            "=HYPERLINK(\"https://evil.example\",\"Renew\")",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "\t=1",
            "\r=1",
        ] {
            let cell = csv_field(attack);
            assert!(cell.starts_with("\"'"), "{attack:?} -> {cell}");
        }
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
        assert_eq!(csv_field("Billing (prod)"), "Billing (prod)");
    }

    #[test]
    fn the_table_prints_no_control_character() {
        assert_eq!(printable("App\x1b[31mRED\nnext"), "App [31mRED next");
    }
}
