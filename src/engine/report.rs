//! What the engine tells its callers (the HTTP functions, the CLI, dev mode).
//!
//! Plain serializable data: no secret value can be held here ([`crate::secret::SecretValue`]
//! does not implement `Serialize`). The credential and pass reports also deserialize: they are
//! part of the stored records ([`crate::engine::records`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The probe's `resultCode` table (the seed's 0, 19 and 24 kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// Everything checked is good.
    Ok = 0,
    /// The rotator's own policy is invalid.
    PolicyInvalid = 10,
    /// An enrolled credential's value in Key Vault is refused by Entra (AADSTS7000222/7000215).
    CredentialRefused = 19,
    /// The rotator's managed identity cannot get a token.
    IdentityUnavailable = 20,
    /// Key Vault refused the rotator (RBAC) or is unreachable.
    KeyVaultAccess = 21,
    /// Graph refused the rotator (not an owner, missing app role) or is unreachable.
    GraphAccess = 22,
    /// The storage account (leases, audit) is unreachable or refused.
    StorageAccess = 23,
    /// An enrolled credential's Key Vault secret is missing.
    SecretMissing = 24,
    /// A consumer does not hold the current version.
    ConsumerOutOfSync = 25,
    /// A credential is inside its renewal window but has not been rotated.
    RotationOverdue = 26,
    /// The last rotation of a credential failed.
    RotationFailed = 27,
    /// A consumer's resource refused the rotator (ARM 403), is gone or unreachable, or its Key
    /// Vault reference does not resolve: that consumer is held up (the others still move).
    ConsumerAccess = 28,
    /// The latest version of an enrolled credential's Key Vault secret is disabled.
    SecretDisabled = 29,
    /// The request itself is malformed or names an unknown command/credential.
    BadRequest = 30,
    /// An unexpected internal error.
    Internal = 50,
}

impl ResultCode {
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Serialized as the probe writes it: the number as a string (`"19"`), the seed's format.
impl Serialize for ResultCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.code())
    }
}

/// One step performed, for the per-invocation summary and the audit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub at: DateTime<Utc>,
    /// e.g. `rotate`, `update-consumer`, `remove-password`.
    pub step: crate::planner::StepKind,
    /// Human sentence; names key ids and consumers, never values.
    pub detail: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CredentialOutcome {
    /// Nothing was due.
    Idle,
    /// Work was done and the credential is now settled (or waiting only for grace).
    Progressed,
    /// Work remains (budget or bounded steps); the next run resumes.
    InProgress,
    /// Needs a person; see `error`.
    Blocked,
    /// A step failed; the next run resumes from the recorded state.
    Failed,
    /// Another instance holds this credential's lease.
    Busy,
    /// A forced rotation was refused (too soon after the last one, or inside a grace period):
    /// `error` says why and `next_due`, when known, from when it would be accepted.
    Refused,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialReport {
    pub name: String,
    pub outcome: CredentialOutcome,
    pub steps: Vec<StepRecord>,
    pub error: Option<String>,
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub run_id: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub credentials: Vec<CredentialReport>,
    /// Credentials not reached within the pass budget; the next run takes them.
    pub deferred: Vec<String>,
    /// The scan for credentials nobody rotates that expire soon, after the enrolled ones
    /// (`None` when ROTATOR_WARN_UNENROLLED_DAYS is 0 or no budget was left).
    pub unenrolled: Option<UnenrolledScanReport>,
}

/// What the pass's scan for expiring credentials nobody rotates found and sent. A failed scan
/// is a `warning` here, never a failed pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnenrolledScanReport {
    /// Warned when expiring within this many days.
    pub warn_days: u32,
    pub scan: crate::engine::inventory::ScanSummary,
    /// Credentials that fell in the window.
    pub expiring: usize,
    /// Messages sent now.
    pub notified: usize,
    /// Already sent today (one message per credential per day).
    pub already_sent_today: usize,
    pub warning: Option<String>,
}

impl UnenrolledScanReport {
    /// One line for the logs and the CLI.
    pub fn line(&self) -> String {
        let mut line = format!(
            "unenrolled credentials: {} expiring within {} days among {} application(s){}; {} notified, {} already notified today",
            self.expiring,
            self.warn_days,
            self.scan.applications,
            if self.scan.owned_only {
                " (owned only)"
            } else {
                ""
            },
            self.notified,
            self.already_sent_today
        );
        if !self.scan.complete {
            line.push_str("; scan incomplete");
        }
        if let Some(w) = &self.warning {
            line.push_str(&format!("; warning: {w}"));
        }
        line
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// e.g. `managed-identity`, `key-vault kv-pa`, `credential provision-assist`.
    pub name: String,
    pub ok: bool,
    pub result_code: ResultCode,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfTestReport {
    pub checks: Vec<Check>,
}

impl SelfTestReport {
    /// The first failing check's code, or `Ok`.
    pub fn result_code(&self) -> ResultCode {
        self.checks
            .iter()
            .find(|c| !c.ok)
            .map(|c| c.result_code)
            .unwrap_or(ResultCode::Ok)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    pub description: String,
    /// `Some(true)` in sync, `Some(false)` not, `None` unknown (write-only target).
    pub in_sync: Option<bool>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    pub name: String,
    pub app_id: Option<String>,
    pub display_name: Option<String>,
    /// keyId of the password whose value is in Key Vault, and how that was established.
    pub key_id_in_use: Option<String>,
    pub key_id_source: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    pub last_rotation: Option<DateTime<Utc>>,
    pub phase: Option<String>,
    pub consumers_in_sync: bool,
    pub consumers: Vec<ConsumerStatus>,
    pub next_due: Option<DateTime<Utc>>,
    pub problem: Option<String>,
    /// Outcome of the most recent run that touched this credential, if recorded.
    pub last_outcome: Option<CredentialOutcome>,
}

/// Which part a key credential on the application plays for its certificate credential.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeyRole {
    /// The current version's key: the one consumers hold or are moving to.
    InUse,
    /// The key the current rotation replaced, removed after grace.
    Previous,
    /// Another key the rotator added (its displayName marker): a version being taken up, or
    /// one the planner cleans up.
    Rotator,
    /// Added by someone else: the rotator never removes it.
    Other,
}

/// One key credential (`keyCredentials`) on a certificate credential's application: public
/// metadata only.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredentialStatus {
    pub key_id: String,
    /// SHA-1 thumbprint, upper-case hex (`None` when Graph gave none).
    pub thumbprint: Option<String>,
    /// Untrusted: whoever added the key chose it.
    pub display_name: Option<String>,
    pub role: KeyRole,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    /// Expires within [`crate::engine::usecase::certificate_status::EXPIRING_DAYS`] days (or has expired).
    pub expiring: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PendingState {
    InProgress,
    Failed,
}

/// The certificate's pending Key Vault operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingStatus {
    pub state: PendingState,
    pub requested: Option<DateTime<Utc>>,
    /// Key Vault's or the CA's words (untrusted, clipped).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ConversionState {
    /// Some consumer of the secret has not been seen off it (or the certificate is not
    /// proven yet).
    Waiting,
    /// Every consumer moved: the secret's passwords go after `removeAfter`.
    SecretReleased,
    /// The secret's passwords are gone.
    Converted,
}

/// One consumer of the replaced client secret.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretConsumerStatus {
    pub description: String,
    /// `Some(true)` seen off the secret, `Some(false)` still on it, `None` cannot be read.
    pub moved: Option<bool>,
    pub detail: Option<String>,
}

/// A conversion from a client secret to this certificate.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversionStatus {
    /// The secret credential (policy name) being replaced.
    pub secret: String,
    pub state: ConversionState,
    pub remove_after: Option<DateTime<Utc>>,
    /// keyIds of the secret's passwords still on the application.
    pub secret_passwords: Vec<String>,
    pub consumers: Vec<SecretConsumerStatus>,
    /// How many of `consumers` are not yet seen off the secret.
    pub still_on_secret: usize,
}

/// One enrolled certificate credential as observed now. Metadata only: never a key, a PFX or
/// a secret value.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    pub name: String,
    pub app_id: Option<String>,
    pub object_id: Option<String>,
    /// Key Vault: vault and certificate name, and the version consumers are meant to hold.
    pub vault: String,
    pub certificate: String,
    pub current_version: Option<String>,
    /// The current version's SHA-1 thumbprint, upper-case hex.
    pub thumbprint: Option<String>,
    /// The current version's key on the application.
    pub key_id_in_use: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    /// `stored`, `propagated`, `retired` (the rotator's tags on the current version).
    pub phase: Option<String>,
    /// The key the current rotation replaced, and when it may go.
    pub previous_key_id: Option<String>,
    pub remove_after: Option<DateTime<Utc>>,
    /// Every key credential on the application.
    pub keys: Vec<KeyCredentialStatus>,
    /// Keys the rotator keeps: in use, previous, or added by it (roles other than `other`).
    pub keys_by_rotator: usize,
    /// Keys with the role `other`: the rotator never removes them.
    pub keys_by_others: usize,
    /// Keys ending within 30 days (or already ended), whoever added them.
    pub keys_expiring: usize,
    pub consumers_in_sync: bool,
    pub consumers: Vec<ConsumerStatus>,
    pub pending: Option<PendingStatus>,
    /// What the next run would do first (the planner's first step), if anything.
    pub next_step: Option<String>,
    /// Set when nothing moves without a person.
    pub blocked: Option<String>,
    /// Consumers that cannot be moved, one sentence each.
    pub held_up: Vec<String>,
    pub next_due: Option<DateTime<Utc>>,
    pub conversion: Option<ConversionStatus>,
    /// Why the credential could not be (fully) observed.
    pub problem: Option<String>,
    pub last_outcome: Option<CredentialOutcome>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub now: DateTime<Utc>,
    pub credentials: Vec<CredentialStatus>,
    /// The enrolled certificate credentials (`"type": "certificate"` policy entries).
    pub certificates: Vec<CertificateStatus>,
    /// The visible applications' credentials that nobody rotates (bounded; `None` where no
    /// scan was made).
    pub unenrolled: Option<crate::engine::inventory::UnenrolledInventory>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialPlan {
    pub name: String,
    pub steps: Vec<String>,
    pub explanation: Vec<String>,
    pub next_due: Option<DateTime<Utc>>,
    pub blocked: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    pub now: DateTime<Utc>,
    pub credentials: Vec<CredentialPlan>,
    /// The certificate credentials' plans (explanation includes consumers held up).
    pub certificates: Vec<CredentialPlan>,
}
