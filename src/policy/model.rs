//! The enrolment policy, as the rest of the program sees it after validation.
//!
//! Every value here has been checked by [`super::parse`]; nothing downstream re-validates.

use chrono::Duration;
use uuid::Uuid;

/// The validated policy: the credentials secret-rotator keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Where it was read from, for messages.
    pub source: String,
    pub credentials: Vec<CredentialPolicy>,
    /// The Key Vault DNS suffix each `secretUri` named (`vault.azure.cn`...), checked against the
    /// configured cloud by [`Policy::check_cloud`].
    pub secret_uri_suffixes: std::collections::HashMap<VaultSecretRef, String>,
}

impl Policy {
    /// Every credential whose `secretUri` names a vault of another cloud than `cloud`: the
    /// rotator would otherwise ask a vault of the same name in its own cloud.
    pub fn check_cloud(&self, cloud: crate::cloud::Cloud) -> Result<(), super::PolicyErrors> {
        let want = cloud.keyvault_suffix();
        let errors: Vec<super::PolicyError> = self
            .credentials
            .iter()
            .filter_map(|c| {
                let suffix = self.secret_uri_suffixes.get(&c.key_vault)?;
                (suffix != want).then(|| super::PolicyError {
                    source: self.source.clone(),
                    entry: Some(c.name.clone()),
                    field: "keyVault.secretUri".into(),
                    message: format!(
                        "names a vault in another cloud ({}.{suffix}) but AZURE_CLOUD is {cloud:?} \
                         (vaults at <name>.{want}); enrol it in a rotator deployed to that cloud",
                        c.key_vault.vault
                    ),
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(super::PolicyErrors { errors })
        }
    }
}

/// How the application is named in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppRef {
    /// The client id (`appId`), what token requests and most runbooks use.
    AppId(Uuid),
    /// The application object id (`id` in Graph).
    ObjectId(Uuid),
}

/// The Key Vault secret whose latest version is the credential's current value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultSecretRef {
    /// Vault name (the host's first label): `kv-pa` for `https://kv-pa.vault.azure.net`.
    pub vault: String,
    /// Secret name, `^[0-9a-zA-Z-]{1,127}$`.
    pub secret: String,
}

/// One enrolled client secret.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialPolicy {
    /// Unique, stable name: used in `--only`, the lease blob, the audit and the password's
    /// displayName marker (`secret-rotator:{name}:...`). `^[a-z0-9][a-z0-9-]{0,62}$`.
    pub name: String,
    pub application: AppRef,
    /// Tenant to request verification tokens in; defaults to the rotator's own tenant.
    pub tenant_id: Option<String>,
    pub key_vault: VaultSecretRef,
    /// Start a rotation when the current secret expires within this (default 30 days).
    pub renew_before: Duration,
    /// Lifetime of a new secret (default 180 days; at most 730, Graph/portal's 24 months).
    pub lifetime: Duration,
    /// How long the previous secret stays after every consumer has the new one (default 7 days).
    pub grace: Duration,
    /// Remove passwords the rotator did not create, but only once they have expired.
    pub remove_unmanaged_expired: bool,
    pub consumers: Vec<Consumer>,
}

/// An ARM resource named by its full id, split into the parts the clients need.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArmResource {
    pub subscription: String,
    pub resource_group: String,
    /// The resource's own name (the site, connection or Automation account).
    pub name: String,
    /// Deployment slot, for `.../sites/{site}/slots/{slot}`.
    pub slot: Option<String>,
}

/// A place that holds (or must be told about) the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Consumer {
    /// An App Service / Function App setting whose value is `@Microsoft.KeyVault(...)` pointing
    /// at the credential's vault secret. Versionless: refresh and confirm the resolved version.
    /// Pinned to a version: rewrite it to the new version.
    AppSettingKeyVaultRef { site: ArmResource, setting: String },
    /// An App Service / Function App setting holding the plain value (discouraged).
    AppSettingValue { site: ArmResource, setting: String },
    /// A Logic Apps API connection (`Microsoft.Web/connections`) with the secret in
    /// `parameterValues[parameter]` (default `token:clientSecret`).
    ApiConnection {
        connection: ArmResource,
        parameter: String,
    },
    /// An Automation Account encrypted variable.
    AutomationVariable {
        account: ArmResource,
        variable: String,
    },
    /// A system nobody can write to from Azure: a person is told the exact manual step.
    NotifyOnly {
        system: String,
        instructions: String,
    },
}

impl Consumer {
    /// A short stable id (8 hex chars of a hash of the target), recorded in Key Vault tags to
    /// remember which consumers already have the current version.
    pub fn id(&self) -> String {
        // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
        let key = self.describe();
        let mut h: u32 = 0x811c9dc5;
        for b in key.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x01000193);
        }
        format!("{h:08x}")
    }

    /// A one-line human description, e.g. `app setting TeamsClientSecret on site func-int`.
    pub fn describe(&self) -> String {
        fn site(r: &ArmResource) -> String {
            match &r.slot {
                Some(s) => format!("{}/{} (slot {s})", r.resource_group, r.name),
                None => format!("{}/{}", r.resource_group, r.name),
            }
        }
        match self {
            Consumer::AppSettingKeyVaultRef { site: s, setting } => {
                format!("Key Vault reference {setting} on site {}", site(s))
            }
            Consumer::AppSettingValue { site: s, setting } => {
                format!("app setting {setting} on site {}", site(s))
            }
            Consumer::ApiConnection {
                connection,
                parameter,
            } => format!(
                "API connection {}/{} ({parameter})",
                connection.resource_group, connection.name
            ),
            Consumer::AutomationVariable { account, variable } => format!(
                "Automation variable {variable} in {}/{}",
                account.resource_group, account.name
            ),
            Consumer::NotifyOnly { system, .. } => format!("notify-only system {system}"),
        }
    }
}
