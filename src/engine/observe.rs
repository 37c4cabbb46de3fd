//! Builds the planner's [`Observation`] of one credential from Azure.
//!
//! Only reads. What cannot be read back (write-only connection parameters, encrypted
//! variables, people) is reported as `NotObservable`, and the planner falls back on the
//! rotator's own tags. A consumer whose read fails (ARM 403, a resource that is gone, an
//! outage) is reported `Blocked` with the reason and what to do, on its own: the credential's
//! observation still succeeds, so every other consumer still moves. So is a consumer whose
//! write failed earlier in the same run ([`Observer::hold`]). [`observe`] reads everything once,
//! the independent reads at once (status, plan, the probe); within a rotation run, [`Observer`]
//! keeps the reads and what each step's answers said, and reads again only what a failed step
//! may have half-written.

use std::collections::BTreeMap;

use crate::engine::executor::{Learnt, TagWrite};
use crate::engine::kvref::KeyVaultReference;
use crate::engine::ports::{
    AzurePorts, ConnectionStatus, DeletedSecret, PortError, ReferenceStatus, VaultSecret,
};
use crate::engine::tags;
use crate::planner::{
    AppState, ConsumerObservation, ConsumerSync, KeyIdentity, Observation, PasswordMarker, Phase,
    RotationTags, Step, VaultState, VaultVersion, VersionRecord,
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
    /// One per policy consumer: what was read of it that spares its update a read.
    pub facts: Vec<ConsumerFact>,
}

/// What the observation read of one consumer that its update step may rely on instead of
/// reading again (`executor::update_consumer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerFact {
    Unknown,
    /// A versionless Key Vault reference to the policy's secret: updating it is a refresh.
    VersionlessReference,
    /// The variable exists and is encrypted: updating it is a PATCH of its value.
    EncryptedVariable,
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
/// executor performs one step (or a batch of consumer updates, each learnt or forgotten in
/// the batch's order) → [`Observer::performed`] forgets what that step wrote →
/// `observe` reads only that again, and recomputes every derived fact (which consumer holds the
/// current version) from the reads.
///
/// Guarantees: whatever a step writes is read back from Azure before the next decision; a
/// consumer's sync is always judged against the Key Vault version read last.
///
/// What a step that succeeded wrote is taken from its own answers ([`Observer::learn`]): the
/// version `setSecret` stored, the tags `updateSecret` answered with, the password addPassword
/// answered with, the consumer the step confirmed (its write was read back or answered with
/// its status). A failed step's resources are forgotten and read again ([`Observer::performed`]).
/// The consumers' `rotator-synced` entries are kept here and written once, with the run's next
/// tag write or at its end ([`Observer::unwritten_tags`]).
///
/// Caveats: what the rotator did not write is assumed unchanged for the seconds a run lasts
/// (the blob lease keeps other instances out; a person editing a setting during a run is seen
/// by the next run, which starts from a full observation). Writes that replace what another
/// writer may have changed still read afresh right before (an app setting under its site's
/// lease, a connection's full PUT). This is what keeps a rotation with three consumers at 16
/// Azure requests in a running process, 21 in a fresh one (docs/performance.md).
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
    /// The known version's tags hold changes not yet written to Key Vault
    /// ([`Observer::unwritten_tags`]).
    unwritten: bool,
}

#[derive(Debug, Clone)]
struct VaultRead {
    secret: Option<VaultSecret>,
    /// When `secret` is `None`: the soft-deleted secret of that name, if any.
    deleted: Option<DeletedSecret>,
    /// Whether Entra accepts the stored value, when it had to be asked (see `observe`).
    accepted: Option<bool>,
    /// The secret's version list, when it had to be read (see [`needs_versions`]).
    versions: Option<Vec<VersionRecord>>,
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
    /// This run's step wrote and confirmed it with Key Vault version `version`.
    Written {
        version: String,
    },
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
            unwritten: false,
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

    /// Forgets what `step` wrote: it failed, and may have half-written.
    pub fn performed(&mut self, step: &Step) {
        match step {
            Step::Adopt { .. } | Step::CompletePropagation { .. } | Step::MarkRetired => {
                self.forget_vault();
            }
            Step::Rotate { .. } => {
                self.app = None;
                self.forget_vault();
            }
            // Its tags are only written with the run's next tag write: the version is intact.
            Step::UpdateConsumer { index, .. } => {
                if let Some(c) = self.consumers.get_mut(*index) {
                    *c = None;
                }
            }
            Step::Notify { .. } => self.forget_vault(),
            Step::RemovePassword { key_id, .. } => {
                self.app = None;
                self.added.retain(|p| p.key_id != *key_id);
            }
        }
    }

    /// Takes what a step that succeeded wrote from its own answers (the version `setSecret`
    /// stored, the tags `updateSecret` answered with, the consumer the step confirmed, the
    /// password removePassword took): nothing is read again for it. What the answers do not
    /// say is forgotten as after a failure.
    pub fn learn(&mut self, step: &Step, learnt: &Learnt) {
        match (step, &learnt.stored) {
            (Step::Rotate { .. }, Some(stored)) => {
                // Entra accepted this value before it was stored (the executor's guarantee);
                // the application keeps its cached read plus the password addPassword
                // answered with (`added`).
                self.unwritten = false;
                self.vault = Some(VaultRead {
                    secret: Some(stored.clone()),
                    deleted: None,
                    accepted: Some(true),
                    versions: None,
                });
                return;
            }
            (Step::Rotate { .. }, None) => return self.performed(step),
            _ => {}
        }
        if let Step::RemovePassword { key_id, .. } = step {
            self.added.retain(|p| p.key_id != *key_id);
            match (&mut self.app, learnt.removed) {
                (Some(Ok(app)), Some(k)) if k == *key_id => {
                    app.passwords.retain(|p| p.key_id != k);
                    // Whether Entra accepts the stored value depends on the passwords.
                    if let Some(v) = &mut self.vault {
                        v.accepted = None;
                    }
                }
                _ => self.app = None,
            }
            return;
        }
        let version = match (&mut self.vault, &learnt.tags) {
            (
                Some(VaultRead {
                    secret: Some(s), ..
                }),
                Some((tags, how)),
            ) => {
                s.tags = tags.clone();
                self.unwritten = *how == TagWrite::Deferred;
                Some(s.version.clone())
            }
            (_, None) if matches!(step, Step::UpdateConsumer { .. }) => self
                .vault
                .as_ref()
                .and_then(|v| v.secret.as_ref())
                .map(|s| s.version.clone()),
            _ => {
                self.forget_vault();
                None
            }
        };
        if let Step::UpdateConsumer { index, .. } = step
            && let Some(slot) = self.consumers.get_mut(*index)
        {
            *slot = match (learnt.confirmed, version) {
                (Some(i), Some(version)) if i == *index => Some(ConsumerRead::Written { version }),
                _ => None,
            };
        }
    }

    /// The known version's tags when they hold changes not written yet (deferred by the steps
    /// that recorded them): the run writes them once before it ends.
    pub fn unwritten_tags(&self) -> Option<(String, BTreeMap<String, String>)> {
        let s = self.vault.as_ref()?.secret.as_ref()?;
        self.unwritten.then(|| (s.version.clone(), s.tags.clone()))
    }

    /// The unwritten tags are now in Key Vault.
    pub fn tags_written(&mut self) {
        self.unwritten = false;
    }

    /// The version is read again; tags recorded on it and not written yet are lost (the next
    /// run writes those consumers again).
    fn forget_vault(&mut self) {
        if self.unwritten {
            tracing::warn!("tags not yet written are dropped with the Key Vault version read");
        }
        self.unwritten = false;
        self.vault = None;
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
        let (app, vault) = self.read_unknown(azure, cred).await?;
        let app = self.app.insert(app).clone();
        let vault = self.vault.insert(vault);
        let (state, current_value_accepted, consumers, versions) = match vault.secret.clone() {
            None => (missing(vault), None, not_stored_consumers(cred), None),
            Some(s) => {
                let identity = identify(&s, app.as_ref().ok());
                let tags = tags::parse(&s.tags, cred).map_err(|msg| {
                    PortError::BadAnswer(format!(
                        "Key Vault secret {}/{} version {}: {msg}",
                        cred.key_vault.vault, cred.key_vault.secret, s.version
                    ))
                })?;
                let accepted = if must_probe(self.probe_value, &identity, &app) {
                    let known = self.known.as_ref();
                    probe(azure, tenant, &app, &s, vault, known).await?
                } else {
                    None
                };
                if vault.versions.is_none() && needs_versions(cred, &app, tags.as_ref()) {
                    vault.versions = read_versions(azure, cred).await;
                }
                read_consumers(azure, cred, &mut self.consumers).await;
                let consumers = consumer_observations(cred, &self.consumers, &self.held, &s);
                let version = VaultVersion {
                    version: s.version.clone(),
                    created: s.created,
                    identity,
                    tags,
                };
                let versions = vault.versions.clone();
                (VaultState::Current(version), accepted, consumers, versions)
            }
        };
        Ok(Observed {
            observation: Observation {
                app: app.clone(),
                vault: state,
                current_value_accepted,
                consumers,
                versions,
            },
            app: app.ok(),
            secret: vault.secret.clone(),
            facts: self.consumers.iter().map(fact).collect(),
        })
    }

    /// The application and the vault, each as known or read now, with this run's added
    /// passwords in the application. The first reads are independent: the application, the
    /// vault and the consumers are read at once (a consumer read for a vault that turns out
    /// missing is kept for later).
    async fn read_unknown(
        &mut self,
        azure: &dyn AzurePorts,
        cred: &CredentialPolicy,
    ) -> Result<(Result<AppState, String>, VaultRead), PortError> {
        let first = self.app.is_none() && self.vault.is_none();
        let (app, vault, _) = futures::join!(
            async {
                match self.app.take() {
                    Some(a) => Ok(a),
                    None => read_app(azure, cred).await,
                }
            },
            async {
                match self.vault.take() {
                    Some(v) => Ok(v),
                    None => read_vault(azure, cred).await,
                }
            },
            async {
                if first {
                    read_consumers(azure, cred, &mut self.consumers).await;
                }
            }
        );
        let (mut app, mut vault) = (app?, vault?);
        if let Ok(a) = &mut app {
            for p in &self.added {
                if !a.passwords.iter().any(|q| q.key_id == p.key_id) {
                    a.passwords.push(p.clone());
                }
            }
        }
        if first {
            // Whether Entra accepts the stored value depends on the app's passwords.
            vault.accepted = None;
        }
        Ok((app, vault))
    }
}

/// The vault's state when it holds no current version.
fn missing(vault: &VaultRead) -> VaultState {
    match vault.deleted {
        None => VaultState::Missing,
        Some(d) => VaultState::SoftDeleted {
            deleted: d.deleted,
            scheduled_purge: d.scheduled_purge,
        },
    }
}

/// Whether Entra must be asked about the stored value: the probe asks always; a run only when
/// the value's password is unknown, or tagged but not listed by Graph (which may only be
/// lagging: eventual consistency), so Entra's answer to the value tells.
fn must_probe(probe_value: bool, identity: &KeyIdentity, app: &Result<AppState, String>) -> bool {
    let tagged_unlisted = match (identity, app) {
        (KeyIdentity::Tagged(k), Ok(a)) => !a.passwords.iter().any(|p| p.key_id == *k),
        _ => false,
    };
    probe_value || tagged_unlisted || matches!(identity, KeyIdentity::Unknown { .. })
}

/// Whether Entra accepts the stored value: as already known for this read, as `known` for its
/// version (the probe's memo), or asked now (a token request) and kept in `vault`.
async fn probe(
    azure: &dyn AzurePorts,
    tenant: &str,
    app: &Result<AppState, String>,
    s: &VaultSecret,
    vault: &mut VaultRead,
    known: Option<&(String, bool)>,
) -> Result<Option<bool>, PortError> {
    if vault.accepted.is_none()
        && let Some((version, ok)) = known
        && *version == s.version
    {
        vault.accepted = Some(*ok);
    }
    if vault.accepted.is_none() {
        vault.accepted = match app {
            Ok(a) => match azure.request_token(tenant, a.app_id, &s.value).await {
                Ok(()) => Some(true),
                Err(PortError::Refused { .. }) => Some(false),
                Err(e) => return Err(e),
            },
            Err(_) => None,
        };
    }
    Ok(vault.accepted)
}

/// Each policy consumer's sync with the current version `s`: held ones are `Blocked` for the
/// rest of the run, the others judged from what was read of them.
fn consumer_observations(
    cred: &CredentialPolicy,
    reads: &[Option<ConsumerRead>],
    held: &[Option<String>],
    s: &VaultSecret,
) -> Vec<ConsumerObservation> {
    cred.consumers
        .iter()
        .zip(reads)
        .zip(held)
        .map(|((c, slot), held)| {
            let sync = match (held, slot) {
                (Some(reason), _) => ConsumerSync::Blocked {
                    reason: reason.clone(),
                },
                (None, Some(read)) => consumer_sync(cred, c, read, s),
                (None, None) => ConsumerSync::Blocked {
                    reason: "it was not read".into(),
                },
            };
            ConsumerObservation { id: c.id(), sync }
        })
        .collect()
}

/// Reads every consumer not known yet, all at once.
async fn read_consumers(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    slots: &mut [Option<ConsumerRead>],
) {
    let reads = slots
        .iter_mut()
        .zip(&cred.consumers)
        .filter(|(slot, _)| slot.is_none())
        .map(|(slot, c)| async move {
            let read = read_consumer(azure, cred, c)
                .await
                .unwrap_or_else(|e| ConsumerRead::Unreadable(unreadable(c, &e)));
            *slot = Some(read);
        });
    futures::future::join_all(reads).await;
}

/// What a consumer's read lets its update rely on.
fn fact(read: &Option<ConsumerRead>) -> ConsumerFact {
    match read {
        Some(ConsumerRead::Setting {
            reference: Some(_), ..
        }) => ConsumerFact::VersionlessReference,
        Some(ConsumerRead::Variable {
            encrypted: Some(true),
        }) => ConsumerFact::EncryptedVariable,
        _ => ConsumerFact::Unknown,
    }
}

/// Whether the planner needs Key Vault's version list: only while `Stored`, when one of the
/// rotator's passwords for this credential is neither the tagged current nor previous one. Then
/// only the list tells a password some consumer may hold (an earlier version had it) from one
/// a crashed run never stored (`planner::VersionRecord`). Rare, so the request is not paid by
/// every observation.
fn needs_versions(
    cred: &CredentialPolicy,
    app: &Result<AppState, String>,
    tags: Option<&RotationTags>,
) -> bool {
    let (Ok(app), Some(t)) = (app, tags) else {
        return false;
    };
    t.phase == Phase::Stored
        && app.passwords.iter().any(|p| {
            p.display_name
                .as_deref()
                .is_some_and(|n| PasswordMarker::is_for(n, &cred.name))
                && p.key_id != t.key_id
                && Some(p.key_id) != t.previous_key_id
        })
}

/// The version list, or `None` when it cannot be read: the planner then keeps every password
/// a consumer might hold, as without the list, and the next observation tries again.
async fn read_versions(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
) -> Option<Vec<VersionRecord>> {
    match azure.vault_versions(&cred.key_vault).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(
                credential = %cred.name,
                "Key Vault's version list could not be read ({e}); the rotator's older passwords are kept"
            );
            None
        }
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
        versions: None,
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
            // One read in the usual case: App Service's status of the reference names the
            // reference itself; the settings are read only when it does not.
            let status = azure.reference_status(site, setting).await?;
            let named = status.as_ref().and_then(|s| s.reference.clone());
            let value = match named {
                Some(raw) => Some(SecretValue::new(raw)),
                None => azure.app_setting(site, setting).await?,
            };
            let versionless = value
                .as_ref()
                .and_then(|raw| KeyVaultReference::parse(raw.expose()))
                .is_some_and(|r| r.points_at(&kv.vault, &kv.secret) && r.version.is_none());
            ConsumerRead::Setting {
                value,
                reference: versionless.then_some(status),
            }
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
    let out = |detail: String| ConsumerSync::OutOfSync { detail };
    match (consumer, read) {
        (_, ConsumerRead::Unreadable(reason)) => ConsumerSync::Blocked {
            reason: reason.clone(),
        },
        (_, ConsumerRead::Written { version }) if *version != current.version => out(format!(
            "written with version {version} in this run; Key Vault now holds {}",
            current.version
        )),
        // Confirmed by the step that wrote it: a setting value was read back whole; a
        // reference, a connection and a variable are judged as their own reads would be
        // judged once recorded in `rotator-synced` (a reference may not say its version).
        (Consumer::AppSettingValue { .. }, ConsumerRead::Written { .. }) => ConsumerSync::InSync,
        (
            Consumer::AppSettingKeyVaultRef { .. } | Consumer::ApiConnection { .. },
            ConsumerRead::Written { .. },
        ) => ConsumerSync::NotObservable {
            healthy: Some(true),
        },
        (_, ConsumerRead::Written { .. }) => ConsumerSync::NotObservable { healthy: None },
        (
            Consumer::AppSettingKeyVaultRef { setting, .. },
            ConsumerRead::Setting { value, reference },
        ) => reference_sync(cred, setting, value.as_ref(), reference, current),
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

/// Whether an app setting that should be a Key Vault reference to the policy's secret holds
/// the current version: pinned to it, or versionless and resolved by App Service to it.
fn reference_sync(
    cred: &CredentialPolicy,
    setting: &str,
    value: Option<&SecretValue>,
    reference: &Option<Option<ReferenceStatus>>,
    current: &VaultSecret,
) -> ConsumerSync {
    let kv = &cred.key_vault;
    let out = |detail: String| ConsumerSync::OutOfSync { detail };
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
        (None, Some(Some(st))) if st.active_version.is_none() && st.status == "Resolved" => {
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
            "the Secret Rotator Site Settings Updater role"
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
