//! The scenario file: the initial contents of the emulated tenant, as JSON (camelCase).
//!
//! Loaded at start (`--scenario`) or through the control API (`POST /_emulator/scenario`), which
//! replaces the whole state. Every field not marked required has a default so a test can state
//! only what it cares about. Ids left out are generated.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Tenant id; generated when absent.
    pub tenant_id: Option<Uuid>,
    /// Tenant's initial domain, for AADSTS messages (default `contoso.onmicrosoft.com`).
    pub tenant_domain: Option<String>,
    /// The one subscription every ARM resource lives in; generated when absent.
    pub subscription_id: Option<Uuid>,
    /// Emulated time at start; real time flows on from there, plus any `advance`.
    /// Absent: the real time.
    pub now: Option<DateTime<Utc>>,
    /// A new password is refused by the token endpoint for this many seconds after addPassword.
    #[serde(default)]
    pub replication_delay_seconds: u64,
    /// Added before every answer on the Azure surface (benchmarks: a realistic round trip).
    #[serde(default)]
    pub latency_ms: u64,
    /// Lifetime of issued access tokens in seconds (default 3599). SDKs cache tokens by real
    /// time while services check expiry on the emulated clock: tests that advance the clock
    /// by days and keep their credentials can raise this instead of re-creating credentials.
    pub token_lifetime_seconds: Option<u64>,
    /// Key credentials one application may hold. Past it Graph refuses the write with 400
    /// `Directory_ResourceSizeExceeded` "The size of the object has exceeded its limit. Please
    /// reduce the number of values and retry your request" (microsoftgraph/microsoft-graph-docs
    /// issue 21469, seen past 600 key credentials). Graph's bound is the object's size; a count
    /// is the emulator's decision. Default 600.
    pub key_credential_limit: Option<u32>,
    /// Graph write quota per calling app (requests per window); default 3000 per 150 s.
    pub graph_write_quota: Option<Quota>,
    /// ARM and Key Vault throttling (`crate::throttle`): `"documented"` or explicit limits;
    /// absent: none.
    pub throttling: Option<crate::throttle::ThrottlingChoice>,
    /// Shorthand for an `appManagementPolicy` with only this lifetime cap (policy id all
    /// zeros): addPassword with a longer lifetime gets 400 `CredentialInvalidLifetimeAsPerAppPolicy`.
    pub max_password_lifetime_days: Option<u32>,
    /// The tenant's default app management policy (`tenantAppManagementPolicy`).
    pub app_management_policy: Option<AppManagementPolicySpec>,
    /// What the evidence about Azure does not settle: one variant per point (README,
    /// "Uncertainties"). Tests run the rotator under every variant ([`Uncertainties::variants`]).
    #[serde(default)]
    pub uncertainties: Uncertainties,
    /// Managed API definitions beyond the built-in `keyvault` one (connection parameters).
    #[serde(default)]
    pub managed_apis: Vec<ManagedApiSpec>,
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
    #[serde(default)]
    pub managed_identities: Vec<ManagedIdentitySpec>,
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentSpec>,
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    #[serde(default)]
    pub connections: Vec<ConnectionSpec>,
    #[serde(default)]
    pub automation_accounts: Vec<AutomationAccountSpec>,
}

/// Points where Microsoft's specs, docs, source and recorded answers disagree or are silent;
/// each is a behaviour with named variants. The default of each is the one with evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Uncertainties {
    /// Does a Key Vault reference's status carry `properties.activeVersion`, and when?
    #[serde(default)]
    pub reference_active_version: ActiveVersion,
    /// `late`: emulated seconds between a refresh (or settings change) and the new resolution
    /// (default 60).
    pub reference_resolve_seconds: Option<u64>,
    /// Graph reads (application GET/list) do not show a password for this many emulated seconds
    /// after addPassword (eventual consistency); addPassword's own answer always has it.
    #[serde(default)]
    pub graph_read_lag_seconds: u64,
    /// Does ARM accept a PUT that changes `parameterValues` of an existing API connection?
    #[serde(default)]
    pub connection_put: ConnectionPut,
    /// Emulated seconds after a key credential is written before the token endpoint accepts an
    /// assertion signed by it (absent: the tenant's `replicationDelaySeconds`, as passwords).
    /// Microsoft documents no replication bound ("There are no documented replication SLAs",
    /// microsoftgraph/msgraph-bicep-types#193; 4-18 s observed for passwords,
    /// microsoftgraph/microsoft-graph-docs#17966), so keys may well lag longer than passwords.
    #[serde(default)]
    pub key_replication_seconds: Option<u64>,
    /// Emulated seconds a `Self`-issued certificate version stays `inProgress` (absent:
    /// `certificates::SELF_ISSUE_SECONDS`). Key Vault says only "This may take some time based
    /// on the issuer provider. Please check again later." (MicrosoftDocs azure-docs
    /// articles/key-vault/certificates/create-certificate-scenarios.md, the pending request's
    /// `status_details`).
    #[serde(default)]
    pub certificate_issue_seconds: Option<u64>,
}

/// Variants of `activeVersion` in Key Vault reference status answers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ActiveVersion {
    /// In the answer, resolved synchronously by the refresh (2024-11-01 spec model).
    #[default]
    Present,
    /// Never in the answer (the spec's examples, the portal's model, captured answers).
    Absent,
    /// In the answer, but the refresh resolves asynchronously: the previous resolution is
    /// reported until `referenceResolveSeconds` have passed.
    Late,
}

/// Variants of a connection PUT that changes an existing connection's `parameterValues`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionPut {
    /// A full PUT replaces the resource (what an ARM template redeploy does).
    #[default]
    Accepted,
    /// 400 `PatchApiConnectionPropertiesNotSupported`, as terraform-provider-azurerm recorded
    /// "for both CreateOrUpdate and Update".
    Refused,
}

impl Uncertainties {
    /// Every variant of every uncertainty, one point at a time, each with a name for test
    /// output; the first is the default.
    pub fn variants() -> Vec<(&'static str, Uncertainties)> {
        let d = Uncertainties::default;
        vec![
            ("default", d()),
            (
                "reference-active-version-absent",
                Uncertainties {
                    reference_active_version: ActiveVersion::Absent,
                    ..d()
                },
            ),
            (
                "reference-active-version-late",
                Uncertainties {
                    reference_active_version: ActiveVersion::Late,
                    ..d()
                },
            ),
            (
                "graph-read-lag-30s",
                Uncertainties {
                    graph_read_lag_seconds: 30,
                    ..d()
                },
            ),
            (
                "connection-put-refused",
                Uncertainties {
                    connection_put: ConnectionPut::Refused,
                    ..d()
                },
            ),
        ]
    }

    /// The variants only certificate credentials meet (key replication, issuance time), one
    /// point at a time like [`Uncertainties::variants`]; the first is the default. Kept apart
    /// so the secret runbooks do not run under variants that cannot touch them.
    pub fn certificate_variants() -> Vec<(&'static str, Uncertainties)> {
        let d = Uncertainties::default;
        vec![
            ("default", d()),
            (
                "key-replication-120s",
                Uncertainties {
                    key_replication_seconds: Some(120),
                    ..d()
                },
            ),
            (
                "certificate-issue-600s",
                Uncertainties {
                    certificate_issue_seconds: Some(600),
                    ..d()
                },
            ),
        ]
    }
}

/// The tenant-wide app management policy's password restrictions (Graph
/// `tenantAppManagementPolicy.applicationRestrictions.passwordCredentials`,
/// `passwordCredentialConfiguration` with `restrictionType` `passwordAddition` /
/// `passwordLifetime`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppManagementPolicySpec {
    /// Policy id named in refusals; generated when absent.
    pub id: Option<Uuid>,
    /// `passwordAddition` enabled: addPassword is refused for every app.
    #[serde(default)]
    pub block_password_addition: bool,
    /// `passwordLifetime` enabled with this maximum.
    pub max_password_lifetime_days: Option<u32>,
    /// `keyCredentials` restriction `asymmetricKeyLifetime` enabled with this maximum
    /// (Graph resource keyCredentialConfiguration, `maxLifetime`).
    pub max_certificate_lifetime_days: Option<u32>,
    /// `excludeActors`: callers (managed identity names or application display names) the
    /// restrictions do not apply to.
    #[serde(default)]
    pub exclude_actors: Vec<String>,
}

/// A managed API's connection parameters (`GET .../locations/{loc}/managedApis/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedApiSpec {
    pub name: String,
    /// Parameter name → type as the definition states it (`string`, `securestring`,
    /// `oauthSetting`, ...).
    pub connection_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    pub requests: u32,
    pub window_seconds: u32,
}

/// An app registration and its service principal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Application object id (`id` in Graph); generated when absent.
    pub object_id: Option<Uuid>,
    /// Client id; generated when absent.
    pub app_id: Option<Uuid>,
    /// Object id of its service principal; generated when absent.
    pub service_principal_id: Option<Uuid>,
    pub display_name: String,
    /// Owners, by name of a managed identity or display name of another application.
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordSpec>,
    /// Certificates (public keys only; Graph never returns key material in lists).
    #[serde(default)]
    pub key_credentials: Vec<KeyCredentialSpec>,
    /// Certificates held by the service principal itself (SAML token signing certificates).
    #[serde(default)]
    pub service_principal_key_credentials: Vec<KeyCredentialSpec>,
    /// Graph application permissions granted to this app's service principal (app-only tokens),
    /// e.g. `Application.ReadWrite.All`.
    #[serde(default)]
    pub graph_app_roles: Vec<String>,
    /// `signInAudience` (default `AzureADMyOrg`); with personal Microsoft accounts an app takes
    /// at most two passwords.
    pub sign_in_audience: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSpec {
    pub key_id: Option<Uuid>,
    pub display_name: Option<String>,
    /// The secret's text: the scenario knows it so tests can hand it to consumers.
    pub secret_text: String,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: DateTime<Utc>,
}

/// A certificate credential of an application, as Graph lists it in `keyCredentials`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyCredentialSpec {
    pub key_id: Option<Uuid>,
    pub display_name: Option<String>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: DateTime<Utc>,
}

/// A managed identity (system-assigned to a site, or the rotator's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedIdentitySpec {
    /// Name used to refer to it elsewhere in the scenario (owners, role assignments, sites).
    pub name: String,
    /// Service principal object id; generated when absent.
    pub principal_id: Option<Uuid>,
    /// Client id; generated when absent.
    pub client_id: Option<Uuid>,
    #[serde(default)]
    pub graph_app_roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultSpec {
    /// Vault name: served at `https://{name}.vault.azure.net`.
    pub name: String,
    /// Resource group, for RBAC scopes (default `rg`).
    pub resource_group: Option<String>,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    pub name: String,
    /// Versions oldest first; each gets a generated 32-hex version id.
    pub versions: Vec<SecretVersionSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretVersionSpec {
    pub value: String,
    pub version: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub enabled: Option<bool>,
}

/// An Azure RBAC role assignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentSpec {
    /// Managed identity name or application display name (its service principal).
    pub principal: String,
    /// Built-in role name, e.g. `Key Vault Secrets Officer`, `Website Contributor`.
    pub role: String,
    /// ARM scope: `/subscriptions/{sub}/resourceGroups/{rg}/providers/...`; the literal
    /// `{sub}` is replaced by the scenario's subscription id.
    pub scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteSpec {
    pub resource_group: String,
    pub name: String,
    /// A deployment slot of site `name` (served at `.../sites/{name}/slots/{slot}`); the site
    /// itself must come earlier in the list.
    pub slot: Option<String>,
    /// Name of its system-assigned managed identity (used for Key Vault references).
    pub identity: Option<String>,
    #[serde(default)]
    pub app_settings: BTreeMap<String, String>,
    /// Deployment slots (`sites/{site}/slots/{slot}`): each has its own settings and identity.
    #[serde(default)]
    pub slots: Vec<SlotSpec>,
}

/// A deployment slot of a site: a site of its own, addressed under its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotSpec {
    pub name: String,
    /// Name of the slot's own system-assigned managed identity.
    pub identity: Option<String>,
    #[serde(default)]
    pub app_settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionSpec {
    pub resource_group: String,
    pub name: String,
    pub location: Option<String>,
    /// Managed API name, e.g. `keyvault` (default).
    pub api: Option<String>,
    pub display_name: Option<String>,
    /// Write-only parameters, e.g. `token:clientId`, `token:clientSecret`, `token:TenantId`,
    /// `token:grantType`.
    #[serde(default)]
    pub parameter_values: BTreeMap<String, String>,
    #[serde(default)]
    pub non_secret_parameter_values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutomationAccountSpec {
    pub resource_group: String,
    pub name: String,
    #[serde(default)]
    pub variables: Vec<VariableSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariableSpec {
    pub name: String,
    /// The JSON-encoded value as ARM carries it (a string is `"\"text\""`).
    pub value: String,
    #[serde(default)]
    pub is_encrypted: bool,
    pub description: Option<String>,
}
