//! What the certificate path needs from Azure: Key Vault certificates (versions with tags,
//! pending operation, policy, create, retag), the application's `keyCredentials` (list, add
//! and remove with a proof signed in Key Vault or by the merge-write), and the client-assertion
//! token request. Like [`crate::engine::ports::AzurePorts`], tests run the real implementation
//! ([`super::azure`]) against the emulator; nothing fakes this trait.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::engine::ports::PortError;
use crate::planner::certificate::{
    AddRefusalKind, KeyCredentialInfo, PendingOperation, Thumbprint,
};
use crate::policy::{CertificateCredentialPolicy, VaultCertificateRef};

/// One version of a Key Vault certificate, metadata and tags (never the PFX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertVersionInfo {
    pub version: String,
    pub thumbprint: Thumbprint,
    pub created: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub tags: BTreeMap<String, String>,
}

/// A new key for the application: which version, under which display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyToAdd<'a> {
    pub certificate: &'a VaultCertificateRef,
    pub version: &'a str,
    pub display_name: String,
}

/// How a `keyCredentials` change is written (the planner's `KeyWrite`, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWriteVia<'a> {
    /// addKey/removeKey with a proof signed by this version's key.
    Proof {
        certificate: &'a VaultCertificateRef,
        signer: &'a str,
    },
    /// PATCH keyCredentials keeping exactly `keep` (refused when one of them is gone).
    Merge { keep: &'a [Uuid] },
}

/// Graph refused the key itself (not the caller): why, for the planner's `AddRefusal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefused {
    pub kind: AddRefusalKind,
    pub detail: String,
}

/// The outcome of an addKey that Graph answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAdded {
    Added(Uuid),
    Refused(KeyRefused),
}

/// A client-assertion token request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAnswer {
    Accepted,
    /// AADSTS700027 "the key was not found": Entra has not replicated the key yet.
    NotReplicated,
    /// Entra refused the assertion for another reason (expired key, wrong certificate...).
    Refused {
        code: u64,
    },
}

#[async_trait::async_trait]
pub trait CertificatePorts: Send + Sync {
    /// Every completed version; `None` when the certificate does not exist.
    async fn cert_versions(
        &self,
        at: &VaultCertificateRef,
    ) -> Result<Option<Vec<CertVersionInfo>>, PortError>;
    /// The pending (or failed) operation; `None` when there is none or it completed.
    async fn cert_pending(
        &self,
        at: &VaultCertificateRef,
    ) -> Result<Option<PendingOperation>, PortError>;
    /// Whether Key Vault's policy for the certificate makes its key exportable.
    async fn cert_exportable(&self, at: &VaultCertificateRef) -> Result<bool, PortError>;
    /// Asks for a new version from the credential's policy, with `tags` on it.
    async fn cert_create(
        &self,
        policy: &CertificateCredentialPolicy,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), PortError>;
    /// Replaces one version's tags; answers the tags Key Vault kept.
    async fn cert_update_tags(
        &self,
        at: &VaultCertificateRef,
        version: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PortError>;
    async fn key_credentials(&self, object_id: Uuid) -> Result<Vec<KeyCredentialInfo>, PortError>;
    /// Puts the version's public certificate on the application.
    async fn add_key(
        &self,
        object_id: Uuid,
        key: KeyToAdd<'_>,
        via: KeyWriteVia<'_>,
    ) -> Result<KeyAdded, PortError>;
    /// Removes exactly `key_id`; `Ok` also when it is already gone.
    async fn remove_key(
        &self,
        object_id: Uuid,
        key_id: Uuid,
        via: KeyWriteVia<'_>,
    ) -> Result<(), PortError>;
    /// One client-credentials token request with an assertion signed by the version's key.
    async fn assertion_token(
        &self,
        tenant: &str,
        client_id: Uuid,
        at: &VaultCertificateRef,
        version: &str,
    ) -> Result<AssertionAnswer, PortError>;
}
