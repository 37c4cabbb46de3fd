//! What the engine needs from Azure, as traits: the executor's only view of the outside world.
//!
//! Why traits between the engine and the clients in [`crate::azure`]: the executor and observer
//! read as the rotation procedure and nothing else, and the clients' one error
//! ([`crate::azure::Error`]) is mapped once, in [`super::azure_ports`], onto [`PortError`], the
//! one error the domain reasons about.
//! Tests do not fake these traits (a fake more lenient than Azure would hide bugs): they run the
//! real clients against the emulator.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::domain::SetVariableOutcome;
use crate::domain::{ListedApp, TokenIdentity};
use crate::engine::inventory::InventoryRow;
use crate::planner::{AppState, PasswordInfo, VersionRecord};
use crate::policy::{AppRef, ArmResource, VaultSecretRef};
use crate::secret::SecretValue;

/// Failure of one Azure operation, as the domain needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Entra refused a client secret (AADSTS code).
    #[error("Entra refused the secret: AADSTS{code}: {message}")]
    Refused { code: u64, message: String },
    /// Graph refused the requested lifetime (tenant app-management policy).
    #[error("the requested secret lifetime was refused: {0}")]
    LifetimeRefused(String),
    #[error("throttled: {0}")]
    Throttled(String),
    /// 5xx, reset, timeout: worth another try on the next run.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The latest Key Vault version is disabled: nothing can read it (Key Vault `SecretDisabled`).
    #[error("disabled: {0}")]
    Disabled(String),
    /// Azure answered something we cannot understand.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
    /// Another instance holds the lease.
    #[error("busy: {0}")]
    Busy(String),
    /// Azure will not take the change as the rotator can make it; a person must (the text
    /// names what to do). Nothing was written.
    #[error("needs a person: {0}")]
    Blocked(String),
    #[error("{0}")]
    Other(String),
}

/// The latest version of a Key Vault secret.
#[derive(Debug, Clone)]
pub struct VaultSecret {
    pub version: String,
    pub value: SecretValue,
    pub tags: BTreeMap<String, String>,
    pub created: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// A soft-deleted Key Vault secret: its name cannot be reused until it is recovered or purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedSecret {
    pub deleted: Option<DateTime<Utc>>,
    pub scheduled_purge: Option<DateTime<Utc>>,
}

/// State of one Key Vault reference in an app's settings, as App Service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceStatus {
    /// `Resolved`, `AccessToKeyVaultDenied`, `SecretNotFound`, ...
    pub status: String,
    /// The reference as the setting holds it (`@Microsoft.KeyVault(...)`), when App Service
    /// says (`properties.reference`, ApiKVReference in the Microsoft.Web spec).
    pub reference: Option<String>,
    /// The secret version the app currently uses.
    pub active_version: Option<String>,
    pub details: Option<String>,
}

/// A Logic Apps API connection's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    pub connected: bool,
    pub message: Option<String>,
}

/// A directory listing the inventory pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Every application (needs a directory-wide read role).
    AllApplications,
    /// The applications a service principal owns (`servicePrincipals/{id}/ownedObjects`).
    OwnedBy(Uuid),
    /// The applications the signed-in user owns (`me/ownedObjects`): an operator's own token.
    OwnedByMe,
    /// Every service principal, with the credentials it holds itself.
    ServicePrincipals,
}

/// One listing, pulled a page at a time: nobody holds more than one page.
#[async_trait::async_trait]
pub trait ListingPager: Send {
    /// The next page, `None` after the last one (a page may be empty; keep calling).
    async fn next_page(&mut self) -> Result<Option<Vec<ListedApp>>, PortError>;
}

/// Graph, Entra, Key Vault and ARM, as the engine uses them.
#[async_trait::async_trait]
pub trait AzurePorts: Send + Sync {
    async fn get_app(&self, app: &AppRef) -> Result<AppState, PortError>;
    /// Who the rotator signs in as (from its own Graph token): decides what it may list.
    async fn caller_identity(&self) -> Result<TokenIdentity, PortError>;
    /// Fetches, together, the rotator's own tokens for the resources a pass uses (Graph and
    /// Key Vault always, ARM when `arm`), so its first requests do not wait for them one by
    /// one. A failure is only logged: the request that needs the token asks again and fails
    /// as it would have without this.
    async fn warm_tokens(&self, arm: bool);
    /// Starts a paged listing; nothing is fetched until the first `next_page`.
    fn list(&self, listing: Listing, page_size: u32) -> Box<dyn ListingPager>;
    /// addPassword: returns the new password and its value (the only time it is visible).
    async fn add_password(
        &self,
        object_id: Uuid,
        display_name: &str,
        end: DateTime<Utc>,
    ) -> Result<(PasswordInfo, SecretValue), PortError>;
    /// removePassword with exactly this keyId. `NotFound` when it is already gone.
    async fn remove_password(&self, object_id: Uuid, key_id: Uuid) -> Result<(), PortError>;
    /// One client-credentials token request with this secret.
    async fn request_token(
        &self,
        tenant: &str,
        client_id: Uuid,
        secret: &SecretValue,
    ) -> Result<(), PortError>;

    async fn vault_latest(&self, at: &VaultSecretRef) -> Result<Option<VaultSecret>, PortError>;
    /// Every version of the secret, metadata only: the password each one's rotator tags name
    /// (planner `VersionRecord`), and when it was written.
    async fn vault_versions(&self, at: &VaultSecretRef) -> Result<Vec<VersionRecord>, PortError>;
    /// The soft-deleted secret of that name, if any (`None` also when the rotator may not see
    /// deleted secrets: it then cannot tell).
    async fn vault_deleted(&self, at: &VaultSecretRef) -> Result<Option<DeletedSecret>, PortError>;
    /// Stores a new version; returns it as Key Vault answered (version id, tags, dates) with
    /// the value stored, so nothing needs reading back to know it.
    async fn vault_set(
        &self,
        at: &VaultSecretRef,
        value: &SecretValue,
        tags: &BTreeMap<String, String>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<VaultSecret, PortError>;
    /// Replaces the tag set of one version; returns the tags as Key Vault answered them.
    async fn vault_update_tags(
        &self,
        at: &VaultSecretRef,
        version: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PortError>;

    /// One app setting's raw value (`None` when the setting does not exist).
    async fn app_setting(
        &self,
        site: &ArmResource,
        name: &str,
    ) -> Result<Option<SecretValue>, PortError>;
    /// Sets one app setting, keeping every other setting as it is: reads the map afresh, writes
    /// it whole, and reads it back; an error unless the map read back is exactly the one
    /// written. Callers hold the site's write lease (`executor::resource_lock_name`).
    async fn set_app_setting(
        &self,
        site: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), PortError>;
    async fn reference_status(
        &self,
        site: &ArmResource,
        name: &str,
    ) -> Result<Option<ReferenceStatus>, PortError>;
    /// Makes App Service re-read Key Vault references now.
    async fn refresh_references(&self, site: &ArmResource) -> Result<(), PortError>;

    async fn connection_status(&self, conn: &ArmResource) -> Result<ConnectionStatus, PortError>;
    /// Replaces one secret parameter of the connection (full PUT; see `azure::connections`);
    /// the status is the one the PUT answered with.
    async fn set_connection_parameter(
        &self,
        conn: &ArmResource,
        parameter: &str,
        value: &SecretValue,
    ) -> Result<ConnectionStatus, PortError>;

    /// Whether the variable exists (and is encrypted).
    async fn automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
    ) -> Result<Option<bool>, PortError>;
    async fn set_automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<SetVariableOutcome, PortError>;
    /// Replaces the value of a variable just observed to exist encrypted (PATCH only, no read;
    /// `isEncrypted` is kept by the PATCH). `NotFound` when it is gone meanwhile.
    async fn update_automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), PortError>;
}

/// A held lease; dropping or releasing it frees the credential for another instance.
#[async_trait::async_trait]
pub trait LeaseGuard: Send {
    async fn release(self: Box<Self>);
}

/// The rotator's own storage: leases, audit records, run outcomes.
#[async_trait::async_trait]
pub trait StorePorts: Send + Sync {
    /// `PortError::Busy` when another instance holds it.
    async fn lease(&self, name: &str) -> Result<Box<dyn LeaseGuard>, PortError>;
    async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), PortError>;
    async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, PortError>;
}

/// A manual step for a person: a consumer nobody can write to from Azure.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManualStep {
    pub credential: String,
    pub system: String,
    pub instructions: String,
    pub app_id: String,
    pub new_key_id: String,
    /// First three characters, so the person can check they copied the right value.
    pub new_hint: String,
    /// Where to read the new value: the Key Vault secret (with version).
    pub secret_id: String,
    /// When the old secret is removed: the step must be done before then.
    pub old_secret_removed_after: Option<DateTime<Utc>>,
    /// Set for a certificate credential: the new certificate's thumbprint (`secret_id` is
    /// then the Key Vault certificate version, `new_hint` empty: no key material is sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_thumbprint: Option<String>,
}

/// Delivers messages to people (logs, Teams, Slack, webhooks).
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// How many webhooks carry the message (0: it is only in the log).
    async fn manual_step(&self, step: &ManualStep) -> Result<usize, PortError>;
    /// A credential's run failed or is blocked and needs a person (at most once a day).
    async fn rotation_failed(
        &self,
        credential: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// A credential nobody rotates expires soon (at most once a day per credential).
    /// `Ok(false)`: already sent today.
    async fn expiring_unenrolled(
        &self,
        row: &InventoryRow,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError>;
}
