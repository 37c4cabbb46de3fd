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
    /// The certificate credentials (`"type": "certificate"` entries), in file order.
    pub certificates: Vec<super::CertificateCredentialPolicy>,
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

impl ArmResource {
    /// The full ARM id, lower-cased: ARM compares resource ids case-insensitively.
    /// `provider_type` is `Microsoft.Web/sites`, `Microsoft.Web/connections`...
    pub fn normalised_id(&self, provider_type: &str) -> String {
        let mut id = format!(
            "/subscriptions/{}/resourcegroups/{}/providers/{provider_type}/{}",
            self.subscription, self.resource_group, self.name
        );
        if let Some(slot) = &self.slot {
            id.push_str("/slots/");
            id.push_str(slot);
        }
        id.to_ascii_lowercase()
    }
}

/// 64-bit FNV-1a: a digest that is stable across builds and platforms (`DefaultHasher` is
/// not), for names the rotator records and must recognise later.
pub fn stable_hash64(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Which consumer of a credential a record is about (`rotator-synced` in Key Vault tags): a
/// digest of the consumer's identity — its kind, the full ARM id compared case-insensitively
/// as ARM compares it, the setting, parameter or variable — never of its display text, so two
/// consumers that differ only by subscription have different ids and rewording
/// [`Consumer::describe`] changes none.
///
/// 16 lower-case hex characters. The first versions of the rotator recorded 8 (a digest of
/// the display text, shared by consumers in different subscriptions); [`ConsumerId::parse`]
/// refuses those, so after an upgrade no old id can make a consumer count as updated: each
/// consumer that cannot be read back is written the current value again, which is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(String);

impl ConsumerId {
    const LEN: usize = 16;

    /// An id as recorded in a tag; `None` for anything else, ids of the first versions included.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a consumer whose normalised identity is `identity`.
    pub(crate) fn of_identity(identity: &str) -> Self {
        Self(format!("{:016x}", stable_hash64(identity)))
    }
}

impl std::fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const SITE: &str = "Microsoft.Web/sites";
const CONNECTION: &str = "Microsoft.Web/connections";
const AUTOMATION_ACCOUNT: &str = "Microsoft.Automation/automationAccounts";

impl Consumer {
    /// The consumer's id, recorded in Key Vault tags to remember which consumers already have
    /// the current version. See [`ConsumerId`].
    pub fn id(&self) -> ConsumerId {
        ConsumerId::of_identity(&self.identity())
    }

    /// What makes the consumer this one, normalised as Azure compares it: ARM ids, setting and
    /// variable names case-insensitively; connection parameter names exactly (they are JSON
    /// keys); a notify-only system by its trimmed, case-folded name and its instructions.
    pub fn identity(&self) -> String {
        match self {
            Consumer::AppSettingKeyVaultRef { site, setting } => format!(
                "appSettingKeyVaultReference|{}|{}",
                site.normalised_id(SITE),
                setting.to_ascii_lowercase()
            ),
            Consumer::AppSettingValue { site, setting } => format!(
                "appSettingValue|{}|{}",
                site.normalised_id(SITE),
                setting.to_ascii_lowercase()
            ),
            Consumer::ApiConnection {
                connection,
                parameter,
            } => format!(
                "apiConnection|{}|{parameter}",
                connection.normalised_id(CONNECTION)
            ),
            Consumer::AutomationVariable { account, variable } => format!(
                "automationVariable|{}|{}",
                account.normalised_id(AUTOMATION_ACCOUNT),
                variable.to_ascii_lowercase()
            ),
            Consumer::NotifyOnly {
                system,
                instructions,
            } => format!(
                "notifyOnly|{}|{}",
                system.trim().to_lowercase(),
                instructions.trim()
            ),
        }
    }

    /// The Azure resource a write of this consumer changes, normalised as ARM compares ids;
    /// `None` for a person. Consumers with the same one are never written at once: App
    /// Service replaces a site's (or slot's) whole settings map on every write, and a
    /// connection's PUT replaces the whole connection. A variable is its own child resource
    /// of the Automation account (`.../variables/{name}`, written by its own PATCH or PUT).
    pub fn written_resource(&self) -> Option<String> {
        match self {
            Consumer::AppSettingKeyVaultRef { site, .. }
            | Consumer::AppSettingValue { site, .. } => Some(site.normalised_id(SITE)),
            Consumer::ApiConnection { connection, .. } => {
                Some(connection.normalised_id(CONNECTION))
            }
            Consumer::AutomationVariable { account, variable } => Some(format!(
                "{}/variables/{}",
                account.normalised_id(AUTOMATION_ACCOUNT),
                variable.to_ascii_lowercase()
            )),
            Consumer::NotifyOnly { .. } => None,
        }
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
