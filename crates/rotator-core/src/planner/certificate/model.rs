//! What the certificate planner sees ([`CertObservation`]) and decides ([`CertDecision`],
//! [`CertStep`]). Metadata only: thumbprints, key ids, dates — never a private key, never a
//! PFX, never a secret value.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::planner::{ConsumerObservation, Phase};
use crate::policy::ConsumerId;

/// A certificate's SHA-1 thumbprint, as raw bytes: Key Vault gives it base64url (`x5t`), Graph
/// base64 (`customKeyIdentifier`), App Service hex; the executor decodes each into this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(pub [u8; 20]);

impl std::fmt::Display for Thumbprint {
    /// Upper-case hex, as App Service and the portal show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// A Key Vault certificate version id (32 hex characters in Azure).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertVersionId(pub String);

impl std::fmt::Display for CertVersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One certificate credential of the application (`keyCredentials`), public metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredentialInfo {
    pub key_id: Uuid,
    /// `customKeyIdentifier` (`None` when Graph gave none or it was not a SHA-1 thumbprint).
    pub thumbprint: Option<Thumbprint>,
    /// The rotator marks the keys it adds `secret-rotator:{credential}:{date}`, like passwords
    /// ([`crate::planner::PasswordMarker`]).
    pub display_name: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl KeyCredentialInfo {
    /// Entra accepts an assertion signed by this key at `now` (its dates allow it).
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| s <= now) && self.end.is_some_and(|e| now < e)
    }
}

/// The application in Graph, as far as certificates go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAppState {
    pub object_id: Uuid,
    pub app_id: Uuid,
    pub keys: Vec<KeyCredentialInfo>,
}

/// Who made a certificate version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrigin {
    /// Created by the rotator's `create` request (its tag `rotator-requested`).
    Requested,
    /// Made by Key Vault's own auto-renewal (or a person) and since adopted by the rotator
    /// (tag `rotator-adopted`).
    Adopted,
    /// No rotator tag: Key Vault's auto-renewal, a person, or an import.
    Unknown,
}

/// The rotator's bookkeeping on the version consumers are meant to hold (its tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRotationTags {
    /// `rotator-key-id`: the keyCredential this version is on the application.
    pub key_id: Uuid,
    /// `rotator-previous-key-id`: the keyCredential it replaced, removed after grace.
    pub previous_key_id: Option<Uuid>,
    pub phase: Phase,
    /// `rotator-remove-after`: set when the phase becomes `Propagated`.
    pub remove_after: Option<DateTime<Utc>>,
    /// `rotator-synced`: consumers known to hold this version.
    pub synced: Vec<ConsumerId>,
    /// `rotator-conversion`: how far the replaced client secret's removal has got. Carried from
    /// version to version by the executor when it takes a new one up.
    pub conversion: Option<ConversionPhase>,
}

/// Where the conversion from a client secret stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionPhase {
    /// Every consumer of the secret was seen on the certificate: the secret goes after this.
    SecretReleased { remove_after: DateTime<Utc> },
    /// The secret's passwords are gone.
    Converted,
}

/// One version of the Key Vault certificate (completed: it has a certificate and a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertVersion {
    pub version: CertVersionId,
    pub thumbprint: Thumbprint,
    pub created: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub origin: VersionOrigin,
    /// `None` when the version carries no rotation tags.
    pub tags: Option<CertRotationTags>,
}

impl CertVersion {
    /// Key Vault signs with it and Entra accepts its dates at `now`.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.enabled
            && self.not_before.is_none_or(|n| n <= now)
            && self.expires.is_some_and(|e| now < e)
    }
}

/// The certificate's pending operation (`/certificates/{name}/pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingOperation {
    /// A new version is being issued (a CA can take minutes to days).
    InProgress { requested: Option<DateTime<Utc>> },
    /// Key Vault or the CA refused: its own words, clipped by the executor.
    Failed { detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVaultState {
    /// No certificate by that name: it is created from the policy.
    Missing,
    /// Soft-deleted: the name is unusable until a person recovers or purges it.
    SoftDeleted {
        scheduled_purge: Option<DateTime<Utc>>,
    },
    Present(CertificateState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    /// Completed versions, any order.
    pub versions: Vec<CertVersion>,
    pub pending: Option<PendingOperation>,
    /// The certificate policy's `key_props.exportable` as Key Vault holds it now.
    pub exportable: bool,
}

impl CertificateState {
    /// The version consumers are meant to hold: the newest with the rotator's tags (`created`,
    /// then position in the list; unknown dates sort oldest). The planner and `Status` both
    /// read it from here, so they can never disagree on which version is current.
    pub fn current(&self) -> Option<(&CertVersion, &CertRotationTags)> {
        self.versions
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.tags.as_ref().map(|t| (i, v, t)))
            .max_by_key(|(i, v, _)| (v.created, *i))
            .map(|(_, v, t)| (v, t))
    }
}

impl CertAppState {
    /// The application key of a version: by its tagged keyId, else by its thumbprint.
    pub fn key_of_version(
        &self,
        version: &CertVersion,
        tagged_key_id: Option<Uuid>,
    ) -> Option<&KeyCredentialInfo> {
        let by_id = tagged_key_id.and_then(|id| self.keys.iter().find(|k| k.key_id == id));
        by_id.or_else(|| {
            self.keys
                .iter()
                .find(|k| k.thumbprint == Some(version.thumbprint))
        })
    }
}

/// Why Graph refused to put a version's key on the application, recorded by the executor
/// against that version so the next run does not ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRefusal {
    pub version: CertVersionId,
    pub kind: AddRefusalKind,
    /// Graph's words, clipped by the executor.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddRefusalKind {
    /// The application has as many key credentials as it may hold.
    KeyCredentialLimit,
    /// A tenant app management policy caps certificate lifetime below this version's.
    LifetimePolicy,
    /// A tenant app management policy does not trust this version's issuer.
    UntrustedIssuer,
    Other,
}

/// Whether one consumer of the replaced client secret has moved off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretConsumerMove {
    /// Observed no longer holding the secret (setting gone or now the certificate).
    Moved,
    /// Observed still holding the secret.
    StillOnSecret { detail: String },
    /// Cannot be read back: counts as not moved (a person removes it from the secret
    /// credential's consumers once it has moved).
    Unknown { reason: String },
}

/// The replaced client secret's side of a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionObservation {
    /// Same length and order as the consumers listed on the secret credential's policy entry:
    /// those are the ones that must move (a secret with none listed has nothing to wait for).
    pub secret_consumers: Vec<SecretConsumerMove>,
    /// The secret credential's passwords still on the application (current and previous,
    /// as its Key Vault tags name them).
    pub secret_passwords: Vec<Uuid>,
}

/// Everything the certificate planner needs about one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertObservation {
    pub app: Result<CertAppState, String>,
    pub vault: CertVaultState,
    /// Did a client assertion signed by the current version's key get a token? `None`: not
    /// tried.
    pub current_accepted: Option<bool>,
    /// Same length and order as the policy's consumers (ids from `CertificateConsumer::id`).
    pub consumers: Vec<ConsumerObservation>,
    pub add_refused: Option<AddRefusal>,
    /// Present when the policy converts a secret and the executor read its side.
    pub conversion: Option<ConversionObservation>,
}

/// Why a new certificate version is requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewReason {
    /// The certificate does not exist yet, or has no version to take up.
    NotCreated,
    /// The current version expires at the given time, within `renewBefore`.
    ExpiringSoon { expires: DateTime<Utc> },
    /// The current version has expired.
    Expired { expired: DateTime<Utc> },
    /// The current version is disabled in Key Vault: it cannot sign.
    CurrentDisabled,
    /// Key Vault gives the current version no expiry date, so its renewal cannot be planned.
    ExpiryUnknown,
    /// Entra refuses an assertion signed by the current version though its key is on the app.
    CurrentRefused,
}

/// How a change to `keyCredentials` is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite {
    /// `addKey` / `removeKey` with a proof JWT signed in Key Vault by this version's key, which
    /// is on the application and valid.
    WithProof { signer: CertVersionId },
    /// `PATCH keyCredentials`: read, keep exactly `keep` (every other key on the application),
    /// add or drop the one key, write, re-read.
    MergeWrite { keep: Vec<Uuid> },
}

/// Why a key is removed from the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRemoveReason {
    /// The previous key, after its grace period.
    Superseded,
    /// Added by a run whose version was never taken up: no consumer ever got it.
    Orphan,
    /// One of the rotator's keys that has expired (it authenticates nobody).
    Expired,
}

/// One idempotent step for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStep {
    /// `POST /certificates/{name}/create` with the policy (tag `rotator-requested`).
    RequestVersion { reason: RenewReason },
    /// Tag a version the rotator did not request (Key Vault's auto-renewal) `rotator-adopted`
    /// before its key goes on the application.
    AdoptVersion { version: CertVersionId },
    /// Enrolment: the version's key is already on the application (put there by people): tag it
    /// as the current version, phase `Retired`, no previous key.
    AdoptCurrent {
        version: CertVersionId,
        key_id: Uuid,
    },
    /// Put the version's public key on the application (display name marker).
    AddKey {
        version: CertVersionId,
        method: KeyWrite,
    },
    /// Request a token with a client assertion signed by the version's key (through Entra's
    /// replication delay), then tag it current: phase `Stored`, previous = `previous_key_id`.
    Prove {
        version: CertVersionId,
        key_id: Uuid,
        previous_key_id: Option<Uuid>,
    },
    /// Move one consumer to the current version and confirm it.
    UpdateConsumer {
        index: usize,
        consumer_id: ConsumerId,
    },
    /// Send the manual step for one notify-only consumer.
    Notify {
        index: usize,
        consumer_id: ConsumerId,
    },
    /// Prove the current version again, then tag it `Propagated` with `remove_after`.
    CompletePropagation { remove_after: DateTime<Utc> },
    /// Remove exactly this keyId from the application.
    RemoveKey {
        key_id: Uuid,
        reason: KeyRemoveReason,
        method: KeyWrite,
    },
    /// Tag the current version `Retired` (previous key gone).
    MarkRetired,
    /// Conversion: every consumer of the secret has moved; its passwords go after `remove_after`.
    ReleaseSecret { remove_after: DateTime<Utc> },
    /// Conversion: removePassword with exactly this keyId (a password of the replaced secret).
    RemoveClientSecret { credential: String, key_id: Uuid },
    /// Conversion: the secret's passwords are gone.
    MarkConverted,
}

/// The certificate planner's answer for one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDecision {
    /// In order; the executor performs the first and observes again.
    pub steps: Vec<CertStep>,
    /// When there is nothing to do now: when to look again. Always after `now`.
    pub next_due: Option<DateTime<Utc>>,
    /// Set when nothing can move without a person; then there are no steps.
    pub blocked: Option<String>,
    /// One human sentence per step or notable non-step.
    pub explanation: Vec<String>,
    /// Consumers that cannot be moved, one sentence each: they hold up completion only.
    pub held_up: Vec<String>,
}
