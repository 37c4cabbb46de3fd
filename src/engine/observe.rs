//! Builds the planner's [`Observation`] of one credential from Azure.
//!
//! Only reads. What cannot be read back (write-only connection parameters, encrypted
//! variables, people) is reported as `NotObservable`, and the planner falls back on the
//! rotator's own tags. A consumer whose read fails (ARM 403, a resource that is gone, an
//! outage) is reported `Blocked` with the reason and what to do, on its own: the credential's
//! observation still succeeds, so every other consumer still moves. So is a consumer whose
//! write failed earlier in the same run ([`Observer::hold`]). [`observe`] reads everything once (status, plan, the probe); within a
//! rotation run, [`Observer`] keeps the reads and reads again only what a step wrote.

use crate::engine::kvref::KeyVaultReference;
use crate::engine::ports::{
    AzurePorts, ConnectionStatus, DeletedSecret, PortError, ReferenceStatus, VaultSecret,
};
use crate::engine::tags;
use crate::planner::{
    AppState, ConsumerObservation, ConsumerSync, KeyIdentity, Observation, Step, VaultState,
    VaultVersion,
};
use crate::policy::{AppRef, Consumer, CredentialPolicy};
use crate::secret::SecretValue;

/// An observation plus what the executor needs to act on it (the value itself never goes to
/// the planner).
#[derive(Debug, Clone)]
pub struct Observed {
    pub observation: Observation,
    pub app: Option<AppState>,
    pub secret: Option<VaultSecret>,
}

/// One full observation (status, plan, the probe): every resource read once.
pub async fn observe(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    tenant: &str,
    probe_value: bool,
) -> Result<Observed, PortError> {
    Observer::new(cred, probe_value)
        .observe(azure, cred, tenant)
        .await
}

/// The observations of one run of one credential, kept between its steps so that only what
/// the last step wrote is read again.
///
/// Expected flow: `observe` (reads everything the first time) → the planner decides → the
/// executor performs one step → [`Observer::performed`] forgets what that step wrote →
/// `observe` reads only that again, and recomputes every derived fact (which consumer holds the
/// current version) from the reads.
///
/// Guarantees: whatever a step writes is read back from Azure before the next decision; a
/// consumer's sync is always judged against the Key Vault version read last.
///
/// Caveats: what the rotator did not write is assumed unchanged for the seconds a run lasts
/// (the blob lease keeps other instances out; a person editing a setting during a run is seen
/// by the next run, which starts from a full observation). This is what keeps a rotation with
/// three consumers at ~30 Azure requests instead of ~57 (docs/performance.md).
#[derive(Debug)]
pub struct Observer {
    probe_value: bool,
    /// A probe answer already known for one Key Vault version ([`Observer::knowing`]).
    known: Option<(String, bool)>,
    /// `None`: to be read. The inner `Err` is a missing/invisible app (the planner blocks on it).
    app: Option<Result<AppState, String>>,
    /// `None`: to be read; `Some(None)`: the Key Vault secret does not exist.
    vault: Option<VaultRead>,
    /// One per policy consumer, in policy order; `None`: to be read.
    consumers: Vec<Option<ConsumerRead>>,
    /// One per policy consumer: why it is held for the rest of this run (a failed write).
    held: Vec<Option<String>>,
    /// Passwords addPassword answered with during this run: Graph is eventually consistent
    /// (Entra, "Designing for eventual consistency"), so a read right after may lack them.
    added: Vec<crate::planner::PasswordInfo>,
}

#[derive(Debug, Clone)]
struct VaultRead {
    secret: Option<VaultSecret>,
    /// When `secret` is `None`: the soft-deleted secret of that name, if any.
    deleted: Option<DeletedSecret>,
    /// Whether Entra accepts the stored value, when it had to be asked (see `observe`).
    accepted: Option<bool>,
}

/// What was read of one consumer, before it is compared with the current Key Vault version.
#[derive(Debug, Clone)]
enum ConsumerRead {
    /// An app setting's raw value and, for a versionless reference to the policy's secret,
    /// what App Service reports it resolved.
    Setting {
        value: Option<SecretValue>,
        reference: Option<Option<ReferenceStatus>>,
    },
    Connection(ConnectionStatus),
    /// `None`: the variable does not exist; else whether it is encrypted.
    Variable {
        encrypted: Option<bool>,
    },
    /// Nothing can be read (a person).
    Person,
    /// The read failed: why, and what to do.
    Unreadable(String),
}

impl Observer {
    /// Takes Entra's answer for Key Vault `version` as known instead of asking again (the probe
    /// memo: a monitoring tool polling `Test` must not make a token request per secret per call).
    pub fn knowing(mut self, version: String, accepted: bool) -> Self {
        self.known = Some((version, accepted));
        self
    }

    pub fn new(cred: &CredentialPolicy, probe_value: bool) -> Self {
        Self {
            probe_value,
            known: None,
            app: None,
            vault: None,
            consumers: vec![None; cred.consumers.len()],
            held: vec![None; cred.consumers.len()],
            added: Vec::new(),
        }
    }

    /// Holds consumer `index` for the rest of the run (its write failed for `reason`): it is
    /// observed `Blocked`, so the planner moves the other consumers instead of retrying it.
    pub fn hold(&mut self, index: usize, reason: String) {
        if let Some(h) = self.held.get_mut(index) {
            *h = Some(reason);
        }
    }

    /// Records passwords addPassword answered with; later reads that lack them get them added.
    pub fn added(&mut self, passwords: impl IntoIterator<Item = crate::planner::PasswordInfo>) {
        self.added.extend(passwords);
    }

    /// Forgets what `step` wrote (it succeeded or not: a failed step may have half-written).
    pub fn performed(&mut self, step: &Step) {
        match step {
            Step::Adopt { .. } | Step::CompletePropagation { .. } | Step::MarkRetired => {
                self.vault = None;
            }
            Step::Rotate { .. } => {
                self.app = None;
                self.vault = None;
            }
            Step::UpdateConsumer { index, .. } => {
                self.vault = None;
                if let Some(c) = self.consumers.get_mut(*index) {
                    *c = None;
                }
            }
            Step::Notify { .. } => self.vault = None,
            Step::RemovePassword { key_id, .. } => {
                self.app = None;
                self.added.retain(|p| p.key_id != *key_id);
            }
        }
    }

    /// Reads what is not known yet and builds the planner's observation. Errors end the
    /// observation: the run for this credential fails and is retried later. A missing or
    /// invisible application is not one of them: the planner blocks on it.
    pub async fn observe(
        &mut self,
        azure: &dyn AzurePorts,
        cred: &CredentialPolicy,
        tenant: &str,
    ) -> Result<Observed, PortError> {
        let app = match self.app.take() {
            Some(a) => a,
            None => {
                // Whether Entra accepts the stored value depends on the app's passwords.
                if let Some(v) = &mut self.vault {
                    v.accepted = None;
                }
                let mut read = read_app(azure, cred).await?;
                if let Ok(a) = &mut read {
                    for p in &self.added {
                        if !a.passwords.iter().any(|q| q.key_id == p.key_id) {
                            a.passwords.push(p.clone());
                        }
                    }
                }
                read
            }
        };
        let app = self.app.insert(app).clone();
        let vault = match self.vault.take() {
            Some(v) => v,
            None => read_vault(azure, cred).await?,
        };
        let vault = self.vault.insert(vault);

        let (state, current_value_accepted, consumers) = match &vault.secret {
            None => (
                match vault.deleted {
                    None => VaultState::Missing,
                    Some(d) => VaultState::SoftDeleted {
                        deleted: d.deleted,
                        scheduled_purge: d.scheduled_purge,
                    },
                },
                None,
                not_stored_consumers(cred),
            ),
            Some(s) => {
                let identity = identify(s, app.as_ref().ok());
                let tags = tags::parse(&s.tags, cred).map_err(|msg| {
                    PortError::BadAnswer(format!(
                        "Key Vault secret {}/{} version {}: {msg}",
                        cred.key_vault.vault, cred.key_vault.secret, s.version
                    ))
                })?;
                // A tagged password Graph does not list may only be lagging (eventual
                // consistency): Entra's answer to the value tells.
                let tagged_unlisted = match (&identity, &app) {
                    (KeyIdentity::Tagged(k), Ok(a)) => !a.passwords.iter().any(|p| p.key_id == *k),
                    _ => false,
                };
                let must_probe = self.probe_value
                    || tagged_unlisted
                    || matches!(identity, KeyIdentity::Unknown { .. });
                if must_probe
                    && vault.accepted.is_none()
                    && let Some((version, ok)) = &self.known
                    && *version == s.version
                {
                    vault.accepted = Some(*ok);
                }
                if must_probe && vault.accepted.is_none() {
                    vault.accepted = match &app {
                        Ok(a) => match azure.request_token(tenant, a.app_id, &s.value).await {
                            Ok(()) => Some(true),
                            Err(PortError::Refused { .. }) => Some(false),
                            Err(e) => return Err(e),
                        },
                        Err(_) => None,
                    };
                }
                let accepted = if must_probe { vault.accepted } else { None };
                let mut consumers = Vec::with_capacity(cred.consumers.len());
                for ((c, slot), held) in cred
                    .consumers
                    .iter()
                    .zip(self.consumers.iter_mut())
                    .zip(&self.held)
                {
                    let read = match slot.take() {
                        Some(r) => r,
                        None => read_consumer(azure, cred, c)
                            .await
                            .unwrap_or_else(|e| ConsumerRead::Unreadable(unreadable(c, &e))),
                    };
                    let read = slot.insert(read);
                    let sync = match held {
                        Some(reason) => ConsumerSync::Blocked {
                            reason: reason.clone(),
                        },
                        None => consumer_sync(cred, c, read, s),
                    };
                    consumers.push(ConsumerObservation { id: c.id(), sync });
                }
                (
                    VaultState::Current(VaultVersion {
                        version: s.version.clone(),
                        created: s.created,
                        identity,
                        tags,
                    }),
                    accepted,
                    consumers,
                )
            }
        };
        Ok(Observed {
            observation: Observation {
                app: app.clone(),
                vault: state,
                current_value_accepted,
                consumers,
            },
            app: app.ok(),
            secret: vault.secret.clone(),
        })
    }
}

/// The latest version; when there is none, whether a soft-deleted secret holds the name.
async fn read_vault(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
) -> Result<VaultRead, PortError> {
    let secret = azure.vault_latest(&cred.key_vault).await?;
    let deleted = match secret {
        Some(_) => None,
        None => azure.vault_deleted(&cred.key_vault).await?,
    };
    Ok(VaultRead {
        secret,
        deleted,
        accepted: None,
    })
}

/// Before the Key Vault secret exists no consumer can hold it: each is out of sync, without a
/// read (they are read once a rotation has stored the first version).
fn not_stored_consumers(cred: &CredentialPolicy) -> Vec<ConsumerObservation> {
    cred.consumers
        .iter()
        .map(|c| ConsumerObservation {
            id: c.id(),
            sync: ConsumerSync::OutOfSync {
                detail: "the Key Vault secret does not exist yet".into(),
            },
        })
        .collect()
}

async fn read_app(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
) -> Result<Result<AppState, String>, PortError> {
    let id = match cred.application {
        AppRef::AppId(id) | AppRef::ObjectId(id) => id,
    };
    match azure.get_app(&cred.application).await {
        Ok(a) => Ok(Ok(a)),
        Err(PortError::NotFound(m)) => Ok(Err(format!(
            "the application is not found or not visible to the rotator ({m}); if it exists, {}",
            owner_guidance(azure, id).await
        ))),
        Err(PortError::AccessDenied(m)) => Ok(Err(format!(
            "Graph refused access to the application ({m}); the rotator's identity needs the \
             Application.ReadWrite.OwnedBy app role, and {}",
            owner_guidance(azure, id).await
        ))),
        Err(e) => Err(e),
    }
}

/// What to run so the rotator may manage an application it does not own: the object id to add
/// as owner and the exact command. `app` is the application's object id or client id (both
/// are accepted by `az ad app owner add --id`).
pub async fn owner_guidance(azure: &dyn AzurePorts, app: uuid::Uuid) -> String {
    match azure.caller_identity().await {
        Ok(me) => format!(
            "the rotator's identity (object id {oid}) must be an owner of the application: \
             az ad app owner add --id {app} --owner-object-id {oid}",
            oid = me.object_id
        ),
        Err(e) => format!(
            "the rotator's identity must be an owner of the application: az ad app owner add \
             --id {app} --owner-object-id <the rotator's service principal object id> (its \
             object id could not be read: {e})"
        ),
    }
}

/// Which password the stored value is: the tags say, Graph's hint confirms.
fn identify(s: &VaultSecret, app: Option<&AppState>) -> KeyIdentity {
    let hint = s.value.hint();
    let Some(app) = app else {
        return KeyIdentity::Unknown {
            reason: "the application cannot be read".into(),
        };
    };
    let tagged = tags::key_id(&s.tags);
    if let Some(k) = tagged {
        return match app.passwords.iter().find(|p| p.key_id == k) {
            // The password is gone: still the tagged one; the planner sees it missing.
            None => KeyIdentity::Tagged(k),
            Some(p) if p.hint.as_deref().is_none_or(|h| h == hint) => KeyIdentity::Tagged(k),
            Some(_) => KeyIdentity::Unknown {
                reason: format!(
                    "the tags name password {k}, but its hint does not match the stored value"
                ),
            },
        };
    }
    let matches: Vec<_> = app
        .passwords
        .iter()
        .filter(|p| p.hint.as_deref() == Some(hint.as_str()))
        .collect();
    match matches.as_slice() {
        [one] => KeyIdentity::InferredFromHint(one.key_id),
        [] => KeyIdentity::Unknown {
            reason: "no password of the application has the stored value's hint".into(),
        },
        many => KeyIdentity::Unknown {
            reason: format!(
                "{} passwords share the stored value's hint; cannot tell which is in use",
                many.len()
            ),
        },
    }
}

async fn read_consumer(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    consumer: &Consumer,
) -> Result<ConsumerRead, PortError> {
    let kv = &cred.key_vault;
    Ok(match consumer {
        Consumer::AppSettingKeyVaultRef { site, setting } => {
            let value = azure.app_setting(site, setting).await?;
            let versionless = value
                .as_ref()
                .and_then(|raw| KeyVaultReference::parse(raw.expose()))
                .is_some_and(|r| r.points_at(&kv.vault, &kv.secret) && r.version.is_none());
            let reference = if versionless {
                Some(azure.reference_status(site, setting).await?)
            } else {
                None
            };
            ConsumerRead::Setting { value, reference }
        }
        Consumer::AppSettingValue { site, setting } => ConsumerRead::Setting {
            value: azure.app_setting(site, setting).await?,
            reference: None,
        },
        Consumer::ApiConnection { connection, .. } => {
            ConsumerRead::Connection(azure.connection_status(connection).await?)
        }
        Consumer::AutomationVariable { account, variable } => ConsumerRead::Variable {
            encrypted: azure.automation_variable(account, variable).await?,
        },
        Consumer::NotifyOnly { .. } => ConsumerRead::Person,
    })
}

/// Why a secret is never written into a plain-text variable, and how to fix it.
pub fn unencrypted_variable(variable: &str) -> String {
    format!(
        "variable {variable} is not encrypted (isEncrypted: false), so anyone with Reader on the \
         account could read a secret written there; delete it and create it again encrypted \
         (or delete it and let the rotator create it encrypted)"
    )
}

/// Whether a consumer holds the current Key Vault version, judged from what was read of it.
fn consumer_sync(
    cred: &CredentialPolicy,
    consumer: &Consumer,
    read: &ConsumerRead,
    current: &VaultSecret,
) -> ConsumerSync {
    let kv = &cred.key_vault;
    let out = |detail: String| ConsumerSync::OutOfSync { detail };
    match (consumer, read) {
        (_, ConsumerRead::Unreadable(reason)) => ConsumerSync::Blocked {
            reason: reason.clone(),
        },
        (
            Consumer::AppSettingKeyVaultRef { setting, .. },
            ConsumerRead::Setting { value, reference },
        ) => {
            let Some(raw) = value else {
                return out(format!("setting {setting} does not exist"));
            };
            let Some(r) = KeyVaultReference::parse(raw.expose()) else {
                return out(format!("setting {setting} is not a Key Vault reference"));
            };
            if !r.points_at(&kv.vault, &kv.secret) {
                return out(format!(
                    "setting {setting} references {}/{}, not {}/{}",
                    r.vault, r.secret, kv.vault, kv.secret
                ));
            }
            match (r.version, reference) {
                (Some(v), _) if v == current.version => ConsumerSync::InSync,
                (Some(v), _) => out(format!("pinned to version {v}")),
                (None, Some(Some(st)))
                    if st.active_version.as_deref() == Some(current.version.as_str()) =>
                {
                    ConsumerSync::InSync
                }
                // No `activeVersion` in the answer (the spec's examples and captured answers
                // lack it): it cannot be read back; the rotator's record of the refresh counts.
                (None, Some(Some(st)))
                    if st.active_version.is_none() && st.status == "Resolved" =>
                {
                    ConsumerSync::NotObservable {
                        healthy: Some(true),
                    }
                }
                (None, Some(Some(st))) => out(format!(
                    "App Service reports {} with version {}",
                    st.status,
                    st.active_version.as_deref().unwrap_or("none")
                )),
                (None, _) => out("App Service reports no status for the reference".into()),
            }
        }
        (Consumer::AppSettingValue { setting, .. }, ConsumerRead::Setting { value, .. }) => {
            match value {
                Some(v) if *v == current.value => ConsumerSync::InSync,
                Some(_) => out(format!("setting {setting} holds another value")),
                None => out(format!("setting {setting} does not exist")),
            }
        }
        (Consumer::ApiConnection { .. }, ConsumerRead::Connection(st)) => {
            ConsumerSync::NotObservable {
                healthy: Some(st.connected),
            }
        }
        (Consumer::AutomationVariable { variable, .. }, ConsumerRead::Variable { encrypted }) => {
            match encrypted {
                Some(true) => ConsumerSync::NotObservable { healthy: None },
                // Held on its own (issue 18): the others still move, this one is never written.
                Some(false) => ConsumerSync::Blocked {
                    reason: unencrypted_variable(variable),
                },
                None => out(format!("variable {variable} does not exist")),
            }
        }
        (Consumer::NotifyOnly { .. }, _) => ConsumerSync::NotObservable { healthy: None },
        // `read_consumer` reads each kind its own way; a mismatch is a bug here, and saying
        // "out of sync" makes the engine write the consumer again rather than trust it.
        (c, _) => out(format!("{}: not read as its kind", c.describe())),
    }
}

/// Why a consumer cannot be read, and what a person should do about it (no value in it).
fn unreadable(consumer: &Consumer, e: &PortError) -> String {
    format!("reading it failed: {e}; {}", remedy(consumer, e))
}

/// What to do about a consumer the rotator could not read or write (`e`), in one clause.
pub fn remedy(consumer: &Consumer, e: &PortError) -> String {
    match e {
        PortError::AccessDenied(_) => format!(
            "give the rotator's identity {} on {} (docs/deploy.md: add it to the deployment's \
             {}), or remove the consumer from the policy",
            writer_role(consumer),
            target_kind(consumer),
            deploy_list(consumer)
        ),
        PortError::NotFound(_) => format!(
            "check {} named in the policy: it does not exist or the rotator cannot see it",
            target_kind(consumer)
        ),
        _ => "retried on the next pass".to_string(),
    }
}

/// The role that lets the rotator read and write a consumer's resource (docs/deploy.md).
fn writer_role(consumer: &Consumer) -> &'static str {
    match consumer {
        Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. } => {
            "Website Contributor"
        }
        Consumer::ApiConnection { .. } => "the Secret Rotator API Connection Updater role",
        Consumer::AutomationVariable { .. } => {
            "the Secret Rotator Automation Variable Updater role"
        }
        Consumer::NotifyOnly { .. } => "no role",
    }
}

/// The deployment parameter that grants [`writer_role`] (infra/main.bicep).
fn deploy_list(consumer: &Consumer) -> &'static str {
    match consumer {
        Consumer::ApiConnection { .. } => "apiConnections",
        Consumer::AutomationVariable { .. } => "automationAccounts",
        _ => "consumerSites",
    }
}

fn target_kind(consumer: &Consumer) -> &'static str {
    match consumer {
        Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. } => "the site",
        Consumer::ApiConnection { .. } => "the API connection",
        Consumer::AutomationVariable { .. } => "the Automation account",
        Consumer::NotifyOnly { .. } => "the consumer",
    }
}
