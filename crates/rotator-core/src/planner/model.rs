//! What the planner sees (an [`Observation`]) and what it decides (a [`Decision`]).
//!
//! The executor builds an `Observation` from Azure for one credential, the planner turns
//! (policy, observation, now) into a `Decision`, and the executor performs only `steps[0]`
//! before observing again. Every step is idempotent, so a crash at any point is resumed by the
//! next run.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::policy::ConsumerId;

/// Prefix of the displayName the rotator gives every password it creates:
/// `secret-rotator:{credential}:{YYYY-MM-DD}`. It is how a crashed run's orphan is recognised
/// and how a password the rotator did not create is told apart.
pub const MARKER_PREFIX: &str = "secret-rotator:";

/// The marker in one place: how it is written and how it is read back.
pub struct PasswordMarker;

impl PasswordMarker {
    /// The displayName of a password created for `credential` at `created`.
    pub fn display_name(credential: &str, created: DateTime<Utc>) -> String {
        format!("{MARKER_PREFIX}{credential}:{}", created.format("%Y-%m-%d"))
    }

    /// Whether the rotator created the password (for any credential).
    pub fn is_rotators(display_name: &str) -> bool {
        display_name.starts_with(MARKER_PREFIX)
    }

    /// Whether the rotator created the password for `credential`. Credential names hold no
    /// `:`, so `pa` never claims `pa-2`'s passwords.
    pub fn is_for(display_name: &str, credential: &str) -> bool {
        display_name
            .strip_prefix(MARKER_PREFIX)
            .and_then(|rest| rest.strip_prefix(credential))
            .is_some_and(|rest| rest.starts_with(':'))
    }
}

/// One password credential of the application, as Graph reports it (never the secret text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordInfo {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    /// First three characters of the secret.
    pub hint: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// The application's state in Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppState {
    pub object_id: Uuid,
    pub app_id: Uuid,
    pub display_name: String,
    pub passwords: Vec<PasswordInfo>,
}

/// Where a rotation of the current Key Vault version stands (tag `rotator-phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The new value is in Key Vault and accepted by Entra; consumers may still be on the old one.
    Stored,
    /// Every consumer has the new value and a token request from the stored value succeeded;
    /// the previous password waits for `remove_after`.
    Propagated,
    /// The previous password is gone: nothing left to do until the next renewal.
    Retired,
}

/// The rotator's bookkeeping on the current Key Vault version (its tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationTags {
    /// `rotator-key-id`: the password this value is.
    pub key_id: Uuid,
    /// `rotator-previous-key-id`: the password this value replaced, removed after grace.
    pub previous_key_id: Option<Uuid>,
    pub phase: Phase,
    /// `rotator-rotated-at`.
    pub rotated_at: Option<DateTime<Utc>>,
    /// `rotator-remove-after`: set when the phase becomes `Propagated`.
    pub remove_after: Option<DateTime<Utc>>,
    /// `rotator-synced`: ids of consumers known to hold this version (see `Consumer::id`).
    pub synced: Vec<ConsumerId>,
}

/// How the current Key Vault version was matched to a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyIdentity {
    /// From the rotator's tags, confirmed by Graph's hint.
    Tagged(Uuid),
    /// No tags (a secret enrolled as people left it): exactly one password's hint matches.
    InferredFromHint(Uuid),
    /// Tags name a password whose hint does not match the value, or several/no hints match.
    Unknown { reason: String },
}

/// The latest version of the credential's Key Vault secret.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultVersion {
    /// 32 hex characters.
    pub version: String,
    pub created: Option<DateTime<Utc>>,
    pub identity: KeyIdentity,
    /// `None` when the version carries no rotator tags.
    pub tags: Option<RotationTags>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VaultState {
    /// No secret by that name: the credential has never been stored.
    Missing,
    /// The secret is soft-deleted: its name cannot be used until a person recovers or purges it.
    SoftDeleted {
        deleted: Option<DateTime<Utc>>,
        scheduled_purge: Option<DateTime<Utc>>,
    },
    Current(VaultVersion),
}

/// Whether one consumer holds the current Key Vault version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerSync {
    /// Observed directly (a readable setting, a resolved Key Vault reference).
    InSync,
    /// Observed directly to hold something else.
    OutOfSync { detail: String },
    /// Cannot be read back (write-only connection parameters, encrypted variables, notify-only):
    /// the planner trusts `RotationTags::synced`, plus whatever health signal there is.
    NotObservable { healthy: Option<bool> },
    /// Cannot be read or written right now (access refused, resource missing, a reference
    /// App Service never resolves...): held on its own, with the executor's reason and what a
    /// person should do. The planner gives it no step; every other consumer still moves.
    Blocked { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerObservation {
    /// `Consumer::id()` of the policy consumer at the same index.
    pub id: ConsumerId,
    pub sync: ConsumerSync,
}

/// Everything the planner needs to know about one credential, gathered by the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `None`: the application does not exist or the rotator may not see it.
    pub app: Result<AppState, String>,
    pub vault: VaultState,
    /// Did a token request with the value now in Key Vault succeed? `None` when not tried.
    pub current_value_accepted: Option<bool>,
    /// Same length and order as the policy's consumers.
    pub consumers: Vec<ConsumerObservation>,
    /// Every version of the Key Vault secret (metadata only), when the executor read the list:
    /// it does so only while `Stored`, when one of the rotator's passwords is neither the
    /// current nor the previous one. `None`: not read (the planner then keeps such a password,
    /// as consumers might hold it).
    pub versions: Option<Vec<VersionRecord>>,
}

/// One version of the Key Vault secret as Key Vault's version list shows it (never the value).
///
/// Why the planner wants it: a value the rotator creates leaves it only in a `setSecret` whose
/// tags name its password, so a password of the rotator's that no version names was never
/// stored and nobody can hold it — also when Graph's eventually consistent reads hid it from
/// the run that should have removed it (found by the fault campaign, seeds 9500079/9500142).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The password its rotator tags name (`None`: no readable rotator tags — a value people
    /// stored, or tags edited by hand).
    pub key_id: Option<Uuid>,
    /// Key Vault's `created` (whole seconds).
    pub created: Option<DateTime<Utc>>,
}

/// Why a rotation starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateReason {
    /// The Key Vault secret does not exist yet.
    NotStored,
    /// The password behind the Key Vault value is gone from the application.
    CurrentPasswordMissing,
    /// Expires at the given time, within `renew_before`.
    ExpiringSoon { expires: DateTime<Utc> },
    /// Already expired: consumers are failing with AADSTS7000222.
    Expired { expired: DateTime<Utc> },
    /// Entra refuses the value now in Key Vault.
    CurrentValueRefused,
    /// It cannot be told which password the value is.
    UnknownCurrentPassword { reason: String },
    /// Asked for explicitly (on-demand `Rotate` with `force`).
    Forced,
}

/// Why a password is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveReason {
    /// The previous password, after its grace period (or already expired).
    Superseded,
    /// Created by a run that crashed before storing it: nobody can have its value.
    Orphan,
    /// Not created by the rotator, expired, and the policy allows removing such passwords.
    ExpiredUnmanaged,
}

/// One idempotent step for the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Record the rotator's tags on a version it did not write (keyId inferred from the hint).
    Adopt { key_id: Uuid },
    /// addPassword (displayName marker, `end`), verify with a token request through Entra's
    /// replication delay, then store as a new Key Vault version (phase `Stored`,
    /// previous = the current key id, `exp` = `end`).
    Rotate {
        reason: RotateReason,
        previous_key_id: Option<Uuid>,
        end: DateTime<Utc>,
    },
    /// Write the current version to one consumer (or refresh its reference) and confirm it.
    UpdateConsumer {
        index: usize,
        consumer_id: ConsumerId,
    },
    /// Send the manual-step message for one notify-only consumer.
    Notify {
        index: usize,
        consumer_id: ConsumerId,
    },
    /// Prove the value read back from Key Vault gets a token, then tag the version
    /// `Propagated` with `remove_after` = now + grace.
    CompletePropagation { remove_after: DateTime<Utc> },
    /// removePassword with exactly this keyId (never the current one).
    RemovePassword { key_id: Uuid, reason: RemoveReason },
    /// Tag the version `Retired` once the previous password is gone.
    MarkRetired,
}

/// A step's name in reports, logs and the audit record (`rotate`, `update-consumer`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Adopt,
    Rotate,
    UpdateConsumer,
    Notify,
    CompletePropagation,
    RemovePassword,
    MarkRetired,
    /// Certificate credentials (`planner::certificate::CertStep`).
    RequestCertificate,
    AdoptCertificate,
    AddKey,
    ProveKey,
    RemoveKey,
    ReleaseSecret,
    RemoveClientSecret,
    MarkConverted,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Adopt => "adopt",
            StepKind::Rotate => "rotate",
            StepKind::UpdateConsumer => "update-consumer",
            StepKind::Notify => "notify",
            StepKind::CompletePropagation => "complete-propagation",
            StepKind::RemovePassword => "remove-password",
            StepKind::MarkRetired => "mark-retired",
            StepKind::RequestCertificate => "request-certificate",
            StepKind::AdoptCertificate => "adopt-certificate",
            StepKind::AddKey => "add-key",
            StepKind::ProveKey => "prove-key",
            StepKind::RemoveKey => "remove-key",
            StepKind::ReleaseSecret => "release-secret",
            StepKind::RemoveClientSecret => "remove-client-secret",
            StepKind::MarkConverted => "mark-converted",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Adopt { .. } => StepKind::Adopt,
            Step::Rotate { .. } => StepKind::Rotate,
            Step::UpdateConsumer { .. } => StepKind::UpdateConsumer,
            Step::Notify { .. } => StepKind::Notify,
            Step::CompletePropagation { .. } => StepKind::CompletePropagation,
            Step::RemovePassword { .. } => StepKind::RemovePassword,
            Step::MarkRetired => StepKind::MarkRetired,
        }
    }
}

/// The planner's answer for one credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// In order; the executor performs the first and observes again.
    pub steps: Vec<Step>,
    /// When nothing is to do: when the next rotation falls due (renewal date).
    pub next_due: Option<DateTime<Utc>>,
    /// Set when the credential cannot be handled without a person (app not visible, the
    /// current password unknown and refused, the policy's lifetime refused...).
    pub blocked: Option<String>,
    /// One human sentence per step or non-step: what is due and why.
    pub explanation: Vec<String>,
    /// Consumers observed `Blocked`, one sentence each (which consumer, why, what to do): they
    /// hold up the rotation's completion, never its other consumers nor the next renewal.
    pub held_up: Vec<String>,
}
