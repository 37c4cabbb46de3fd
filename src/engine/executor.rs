//! Performs one planner [`Step`] against Azure.
//!
//! Expected flow of a rotation, one step per call, re-observing in between what the step wrote
//! (`engine::observe::Observer`):
//! `Rotate` (addPassword → token request until Entra accepts it → new Key Vault version tagged
//! `stored`) → `UpdateConsumer`/`Notify` for each consumer (each recorded in the version's
//! `rotator-synced` tag: a notification at once, an update with the run's next tag write, see
//! [`TagWrite`]) → `CompletePropagation` (the value read back from Key Vault; a token request
//! unless it is the very value Entra accepted in this run's rotation; tagged `propagated` with
//! the removal date) → after grace `RemovePassword` (exact previous keyId) → `MarkRetired`.
//! [`perform`] hands each step to its own method of `On` (the step's context: the run, the
//! credential, the observation it was planned from); [`perform_batch`] sends the consumer
//! updates `planner::first_batch` put together at once (each on its own resource, an app
//! setting still under its site's lease) and records the confirmed ones in step order.
//!
//! Guarantees:
//! - A new value reaches Key Vault (and so any consumer) only after Entra has accepted it.
//! - Nothing is removed here unless the step names it, and never the password the Key Vault
//!   value is (checked again here, against the observation the step was planned from).
//! - Every step is idempotent: after a crash or a lost answer the next observation shows what
//!   happened and the planner picks up from there.
//!
//! - Writers of one target resource are serialised: an app-setting consumer is read, written and
//!   confirmed only while the rotator holds the blob lease [`resource_lock_name`] of its site
//!   (or slot) in its own storage. Credentials run in parallel and on several instances, and
//!   App Service replaces the whole settings map on every PUT (no ETag), so without the lease a
//!   second writer restores the first one's old value. Under the lease the settings are read
//!   afresh before the write and read back after it: the write is confirmed only when the map
//!   read back is exactly the one written (nothing else on the site changed).
//!   Sources: `WebApps_UpdateApplicationSettings` "Replaces the application settings of an
//!   app" (https://learn.microsoft.com/dotnet/api/azure.resourcemanager.appservice.websiteresource.updateapplicationsettings);
//!   Lease Blob "creates and manages a lock on a blob for write and delete operations. The lock
//!   duration can be 15 to 60 seconds, or can be infinite"; acquiring a leased blob's lease
//!   fails with 409 `LeaseAlreadyPresent` (https://learn.microsoft.com/rest/api/storageservices/lease-blob).
//!
//! Caveats: a crash between addPassword and the Key Vault write leaves an orphan password that
//! nobody knows the value of; the next run's planner removes it (its displayName carries the
//! marker). A person editing app settings at the same moment is not held off by the lease; the
//! read-back then fails the step and the next run writes again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cloud::Cloud;
use crate::engine::kvref::KeyVaultReference;
use crate::engine::observe::ConsumerFact;
use crate::engine::observe::{Observed, owner_guidance, unencrypted_variable};
use crate::engine::ports::{
    AzurePorts, LeaseGuard, ManualStep, Notifier, PortError, SetVariableOutcome, StorePorts,
    VaultSecret,
};
use crate::engine::tags;
use crate::planner::{
    AppState, KeyIdentity, PasswordInfo, PasswordMarker, Phase, RemoveReason, RotateReason,
    RotationTags, Step, VaultState,
};
use crate::policy::{ArmResource, Consumer, ConsumerId, CredentialPolicy};
use crate::secret::SecretValue;

/// How long and how often to retry a token request while a new secret replicates.
#[derive(Debug, Clone, Copy)]
pub struct VerifyPolicy {
    pub timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(180),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
        }
    }
}

pub struct ExecContext<'a> {
    pub azure: &'a dyn AzurePorts,
    pub notifier: &'a dyn Notifier,
    /// The rotator's storage: the per-resource write leases.
    pub store: &'a dyn StorePorts,
    pub cloud: Cloud,
    pub tenant: &'a str,
    pub verify: VerifyPolicy,
    /// Passwords this run's addPassword calls answered with: Graph reads may lag behind them
    /// (eventual consistency), so the observer trusts these over a read that lacks them.
    pub added: std::sync::Mutex<Vec<PasswordInfo>>,
    /// The value Entra accepted in this run's `Rotate` (its token request): the verification
    /// of `CompletePropagation` compares the value read back from Key Vault with it instead of
    /// asking Entra about the same bytes again.
    pub accepted: std::sync::Mutex<Option<SecretValue>>,
    /// Client-secret credentials a certificate credential replaces (`replacesSecret`): a
    /// setting of theirs that is gone was moved off the secret by a person, and writing it
    /// back would undo that move and hold the secret's passwords on the application.
    pub converting: Vec<&'a str>,
}

/// What a step that succeeded changed, as its own answers say: the observer keeps these
/// instead of reading the resources again (`engine::observe::Observer::learn`).
#[derive(Debug, Default)]
pub struct Learnt {
    /// The version `Rotate` stored, as `setSecret` answered it (with the value stored).
    pub stored: Option<VaultSecret>,
    /// The current version's tags after the step, and whether they are in Key Vault yet.
    pub tags: Option<(BTreeMap<String, String>, TagWrite)>,
    /// The consumer the step wrote and confirmed (its index in the policy).
    pub confirmed: Option<usize>,
    /// The password the step removed (or found already gone).
    pub removed: Option<Uuid>,
}

/// Whether a step's tags were written to Key Vault or left for the run to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagWrite {
    /// Written: the tags are Key Vault's answer.
    Written,
    /// Not written yet: a consumer's `rotator-synced` entry or an adoption, written with the
    /// next tag write of the run or at its end (`Observer::unwritten_tags`). Lost only if the
    /// process dies first; the next run then writes the consumer again (every step is
    /// idempotent), so one tag write per phase change is enough.
    Deferred,
}

/// A step's sentence for the run's record (key ids, never values) and what it learnt.
#[derive(Debug)]
pub struct Done {
    pub detail: String,
    pub learnt: Learnt,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{action}: {source}")]
    Azure {
        action: &'static str,
        #[source]
        source: PortError,
    },
    #[error("{0}")]
    NotConfirmed(String),
    #[error("refusing to act: {0}")]
    Invariant(String),
    /// The rotator's state does not fit in the Key Vault tags the owner's leave free.
    #[error("{0}")]
    TagBudget(String),
    /// Azure will not take the change as the rotator can make it; nothing was written and a
    /// person must act (the text says how). The run reports `blocked`.
    #[error("{0}")]
    Blocked(String),
    /// Azure has taken the change but not finished applying it within the bounded wait (an
    /// asynchronous Key Vault reference resolution); the next run checks again.
    #[error("{0}")]
    Pending(String),
}

/// The action of a failed tag update: the rotator's own bookkeeping in Key Vault.
const RETAG: &str = "update Key Vault tags";
/// The action of a failed site lease: the rotator's own storage account.
const LOCK: &str = "take the site's write lease";

impl StepError {
    /// Whether this failure is the consumer's own (its resource refused, failed or did not
    /// confirm), as opposed to the rotator's own storage or bookkeeping in Key Vault.
    pub fn is_consumers(&self) -> bool {
        !matches!(self, StepError::Azure { action, .. } if [RETAG, LOCK].contains(action))
    }
}

pub(crate) fn az(action: &'static str) -> impl FnOnce(PortError) -> StepError {
    move |source| match source {
        PortError::Blocked(m) => StepError::Blocked(m),
        // A lifetime over a tenant cap stays an Azure error: the rotation learns the cap and
        // retries with a shorter lifetime (`engine::lifetime`).
        source => StepError::Azure { action, source },
    }
}

/// The key id the Key Vault value is, if known.
pub fn current_key_id(observed: &Observed) -> Option<Uuid> {
    match &observed.observation.vault {
        VaultState::Current(v) => match &v.identity {
            KeyIdentity::Tagged(k) | KeyIdentity::InferredFromHint(k) => Some(*k),
            KeyIdentity::Unknown { .. } => v.tags.as_ref().map(|t| t.key_id),
        },
        VaultState::Missing | VaultState::SoftDeleted { .. } => None,
    }
}

/// Requests tokens until Entra accepts the secret (replication delay) or the policy's timeout.
/// Returns the number of attempts.
pub async fn verify_secret(
    ctx: &ExecContext<'_>,
    client_id: Uuid,
    tenant: &str,
    secret: &SecretValue,
) -> Result<u32, StepError> {
    let started = Instant::now();
    let mut backoff = ctx.verify.first_backoff;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match ctx.azure.request_token(tenant, client_id, secret).await {
            Ok(()) => return Ok(attempts),
            // 7000215: not replicated yet (or wrong); worth waiting for.
            Err(PortError::Refused { code: 7000215, .. }) => {
                "Entra does not accept the new secret yet (AADSTS7000215)".to_string()
            }
            Err(e @ (PortError::Transient(_) | PortError::Throttled(_))) => e.to_string(),
            Err(e) => return Err(az("token request")(e)),
        };
        if started.elapsed() + backoff > ctx.verify.timeout {
            return Err(StepError::NotConfirmed(format!(
                "{last}, still after {attempts} attempts over {}s",
                started.elapsed().as_secs()
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(ctx.verify.max_backoff);
    }
}

fn tenant_of<'a>(cred: &'a CredentialPolicy, ctx: &'a ExecContext<'_>) -> &'a str {
    cred.tenant_id.as_deref().unwrap_or(ctx.tenant)
}

/// Performs `step`; returns a sentence for the run's record (key ids, never values) and what
/// the step's answers told (see [`Learnt`]).
pub async fn perform(
    ctx: &ExecContext<'_>,
    cred: &CredentialPolicy,
    observed: &Observed,
    step: &Step,
    now: DateTime<Utc>,
) -> Result<Done, StepError> {
    let app = observed.app.as_ref().ok_or_else(|| {
        StepError::Invariant("the application was not observed; nothing can be done".into())
    })?;
    let on = On {
        ctx,
        cred,
        observed,
        app,
        now,
    };
    match step {
        Step::Adopt { key_id } => on.adopt(*key_id).await,
        Step::Rotate {
            reason,
            previous_key_id,
            end,
        } => on.rotate(reason, *previous_key_id, *end).await,
        Step::UpdateConsumer { index, consumer_id } => {
            on.update_consumer(*index, consumer_id).await
        }
        Step::Notify { index, consumer_id } => on.notify(*index, consumer_id).await,
        Step::CompletePropagation { remove_after } => on.complete_propagation(*remove_after).await,
        Step::RemovePassword { key_id, reason } => on.remove_password(*key_id, reason).await,
        Step::MarkRetired => on.mark_retired().await,
    }
}

/// Performs `steps` together, as `planner::first_batch` chose them: one step as [`perform`];
/// several (consumer updates of different resources, each under its own site's lease where it
/// has one) at once. The results are in the steps' order; a failure is that step's alone.
pub async fn perform_batch(
    ctx: &ExecContext<'_>,
    cred: &CredentialPolicy,
    observed: &Observed,
    steps: &[Step],
    now: DateTime<Utc>,
) -> Vec<Result<Done, StepError>> {
    if let [step] = steps {
        return vec![perform(ctx, cred, observed, step, now).await];
    }
    let Some(app) = observed.app.as_ref() else {
        let missing = || StepError::Invariant("the application was not observed".into());
        return steps.iter().map(|_| Err(missing())).collect();
    };
    let on = On {
        ctx,
        cred,
        observed,
        app,
        now,
    };
    on.update_consumers(steps).await
}

/// What a step is performed on: the run's context, the credential, the observation the step
/// was planned from (and its application, which every step needs), and the step's `now`.
struct On<'s> {
    ctx: &'s ExecContext<'s>,
    cred: &'s CredentialPolicy,
    observed: &'s Observed,
    app: &'s AppState,
    now: DateTime<Utc>,
}

/// A step's answer whose only lesson is the current version's tags.
fn tagged(detail: String, tags: Option<(BTreeMap<String, String>, TagWrite)>) -> Done {
    Done {
        detail,
        learnt: Learnt {
            tags,
            ..Learnt::default()
        },
    }
}

impl On<'_> {
    /// The rotator's state on the current Key Vault version, as observed.
    fn current_tags(&self) -> Option<RotationTags> {
        match &self.observed.observation.vault {
            VaultState::Current(v) => v.tags.clone(),
            VaultState::Missing | VaultState::SoftDeleted { .. } => None,
        }
    }

    /// The rotation state as observed, for the steps that move it on.
    fn rotation_state(&self) -> Result<RotationTags, StepError> {
        self.current_tags()
            .ok_or_else(|| StepError::Invariant("the current version has no rotation state".into()))
    }

    /// Writes the current version's rotator tags as `t`, now or left for the run to write
    /// (`TagWrite::Deferred`); either way the result is what the observer keeps.
    async fn retag(
        &self,
        t: RotationTags,
        how: TagWrite,
    ) -> Result<Option<(BTreeMap<String, String>, TagWrite)>, StepError> {
        let s = self.observed.secret.as_ref().ok_or_else(|| {
            StepError::Invariant("no Key Vault version to record progress on".into())
        })?;
        let rendered = tags::render(&s.tags, self.cred, &t).map_err(StepError::TagBudget)?;
        let tags = match how {
            TagWrite::Deferred => rendered,
            TagWrite::Written => self
                .ctx
                .azure
                .vault_update_tags(&self.cred.key_vault, &s.version, &rendered)
                .await
                .map_err(az(RETAG))?,
        };
        Ok(Some((tags, how)))
    }

    /// Records consumer `id` as holding the current version (`rotator-synced`).
    async fn mark_synced(
        &self,
        id: &ConsumerId,
        how: TagWrite,
    ) -> Result<Option<(BTreeMap<String, String>, TagWrite)>, StepError> {
        let Some(mut t) = self.current_tags() else {
            return Ok(None);
        };
        if !t.synced.contains(id) {
            t.synced.push(id.clone());
        }
        self.retag(t, how).await
    }

    async fn adopt(&self, key_id: Uuid) -> Result<Done, StepError> {
        // Deferred: a rotation right after it tags its own new version instead.
        let t = RotationTags {
            key_id,
            previous_key_id: None,
            phase: Phase::Retired,
            rotated_at: None,
            remove_after: None,
            synced: Vec::new(),
        };
        let tags = self.retag(t, TagWrite::Deferred).await?;
        Ok(tagged(
            format!("adopted the stored value as password {key_id} (matched by its hint)"),
            tags,
        ))
    }

    async fn rotate(
        &self,
        reason: &RotateReason,
        previous_key_id: Option<Uuid>,
        end: DateTime<Utc>,
    ) -> Result<Done, StepError> {
        let (ctx, cred, kv) = (self.ctx, self.cred, &self.cred.key_vault);
        // The owner's tags, kept on the new version next to the rotator's.
        let foreign_tags: BTreeMap<String, String> = self
            .observed
            .secret
            .as_ref()
            .map(|s| {
                s.tags
                    .iter()
                    .filter(|(k, _)| !tags::is_rotator_tag(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // Before anything is created: the new version's state must fit next to the owner's tags.
        tags::check_room(&foreign_tags, cred).map_err(StepError::TagBudget)?;
        let (info, value, attempts) = self.add_accepted_password(end).await?;
        let t = RotationTags {
            key_id: info.key_id,
            previous_key_id,
            phase: Phase::Stored,
            rotated_at: Some(self.now),
            remove_after: None,
            synced: Vec::new(),
        };
        let rendered = tags::render(&foreign_tags, cred, &t).map_err(StepError::TagBudget)?;
        // After this call the password must stay: a lost answer may hide a stored value.
        let stored = ctx
            .azure
            .vault_set(kv, &value, &rendered, Some(end))
            .await
            .map_err(az("store the new value in Key Vault"))?;
        Ok(Done {
            detail: format!(
                "rotated ({}): added password {} (hint {}…, expires {}), accepted by Entra \
                 after {attempts} attempt(s), stored as {}/{} version {}",
                describe_reason(reason),
                info.key_id,
                value.hint(),
                end.format("%Y-%m-%d"),
                kv.vault,
                kv.secret,
                stored.version
            ),
            learnt: Learnt {
                stored: Some(stored),
                ..Learnt::default()
            },
        })
    }

    /// addPassword, then token requests until Entra accepts the new value (the attempts
    /// counted). A value Entra never accepts is removed at once: nobody has it yet.
    async fn add_accepted_password(
        &self,
        end: DateTime<Utc>,
    ) -> Result<(PasswordInfo, SecretValue, u32), StepError> {
        let (ctx, app) = (self.ctx, self.app);
        let marker = PasswordMarker::display_name(&self.cred.name, self.now);
        let (info, value) = match ctx.azure.add_password(app.object_id, &marker, end).await {
            Err(PortError::AccessDenied(m)) => {
                let how = owner_guidance(ctx.azure, app.object_id).await;
                return Err(az("addPassword")(PortError::AccessDenied(format!(
                    "{m}; {how}"
                ))));
            }
            other => other.map_err(az("addPassword"))?,
        };
        let tenant = tenant_of(self.cred, ctx);
        let attempts = match verify_secret(ctx, app.app_id, tenant, &value).await {
            Ok(n) => n,
            Err(e) => {
                // Nobody has the value yet, so the new password can go at once.
                let _ = ctx.azure.remove_password(app.object_id, info.key_id).await;
                return Err(e);
            }
        };
        if let Ok(mut added) = ctx.added.lock() {
            added.push(info.clone());
        }
        if let Ok(mut accepted) = ctx.accepted.lock() {
            *accepted = Some(value.clone());
        }
        Ok((info, value, attempts))
    }

    async fn update_consumer(
        &self,
        index: usize,
        consumer_id: &ConsumerId,
    ) -> Result<Done, StepError> {
        let detail = self.write_consumer(index).await?;
        let tags = self.mark_synced(consumer_id, TagWrite::Deferred).await?;
        Ok(Done {
            detail,
            learnt: Learnt {
                tags,
                confirmed: Some(index),
                ..Learnt::default()
            },
        })
    }

    /// Writes the current version to consumer `index` and confirms it; records nothing.
    async fn write_consumer(&self, index: usize) -> Result<String, StepError> {
        let consumer = self.cred.consumers.get(index).ok_or_else(|| {
            StepError::Invariant(format!("consumer #{index} is not in the policy"))
        })?;
        let current = self.observed.secret.as_ref().ok_or_else(|| {
            StepError::Invariant("no Key Vault value to hand to consumers".into())
        })?;
        let fact = self
            .observed
            .facts
            .get(index)
            .copied()
            .unwrap_or(ConsumerFact::Unknown);
        update_consumer(self.ctx, self.cred, consumer, current, fact).await
    }

    /// `UpdateConsumer` steps performed together (`planner::first_batch`: each writes its own
    /// resource): the writes go out at once; then, in the steps' order, each confirmed
    /// consumer is added to the version's `rotator-synced` entry (deferred, as one step's), so
    /// each `Done` carries the tags with every confirmed consumer of the batch so far.
    async fn update_consumers(&self, steps: &[Step]) -> Vec<Result<Done, StepError>> {
        let writes = steps.iter().map(|step| async move {
            match step {
                Step::UpdateConsumer { index, .. } => self.write_consumer(*index).await,
                _ => Err(StepError::Invariant(format!(
                    "only consumer updates are performed together, not {}",
                    step.kind()
                ))),
            }
        });
        let written = futures::future::join_all(writes).await;
        let mut state = self.current_tags();
        let mut done = Vec::with_capacity(steps.len());
        for (step, result) in steps.iter().zip(written) {
            done.push(match result {
                Ok(detail) => self.record_batched(step, detail, &mut state).await,
                Err(e) => Err(e),
            });
        }
        done
    }

    /// One confirmed consumer of a batch, added to `state` (the batch's tags so far).
    async fn record_batched(
        &self,
        step: &Step,
        detail: String,
        state: &mut Option<RotationTags>,
    ) -> Result<Done, StepError> {
        let Step::UpdateConsumer { index, consumer_id } = step else {
            return Err(StepError::Invariant("not a consumer update".into()));
        };
        let tags = match state {
            None => None,
            Some(t) => {
                let mut next = t.clone();
                if !next.synced.contains(consumer_id) {
                    next.synced.push(consumer_id.clone());
                }
                let tags = self.retag(next.clone(), TagWrite::Deferred).await?;
                *t = next;
                tags
            }
        };
        Ok(Done {
            detail,
            learnt: Learnt {
                tags,
                confirmed: Some(*index),
                ..Learnt::default()
            },
        })
    }

    async fn notify(&self, index: usize, consumer_id: &ConsumerId) -> Result<Done, StepError> {
        let Some(Consumer::NotifyOnly {
            system,
            instructions,
        }) = self.cred.consumers.get(index)
        else {
            return Err(StepError::Invariant(format!(
                "consumer #{index} is not a notify-only consumer"
            )));
        };
        let msg = self.manual_step(system, instructions)?;
        let hooks = self
            .ctx
            .notifier
            .manual_step(&msg)
            .await
            .map_err(az("send the manual-step message"))?;
        // Written at once: a record lost with the process would tell the person twice.
        let tags = self.mark_synced(consumer_id, TagWrite::Written).await?;
        let what = format!(
            "take the new value from {} before {}",
            msg.secret_id,
            (self.now + self.cred.grace).format("%Y-%m-%d %H:%M UTC")
        );
        let detail = match hooks {
            0 => format!(
                "no webhook is configured: the manual step for {system} ({what}) is only in the log"
            ),
            n => format!("told the owners of {system} through {n} webhook(s) to {what}"),
        };
        Ok(tagged(detail, tags))
    }

    /// The message telling a person to take the current value into `system` (where it is,
    /// never what it is).
    fn manual_step(&self, system: &str, instructions: &str) -> Result<ManualStep, StepError> {
        let (cred, kv) = (self.cred, &self.cred.key_vault);
        let current = self
            .observed
            .secret
            .as_ref()
            .ok_or_else(|| StepError::Invariant("no Key Vault value to announce".into()))?;
        Ok(ManualStep {
            credential: cred.name.clone(),
            system: system.to_string(),
            instructions: instructions.to_string(),
            app_id: self.app.app_id.to_string(),
            new_key_id: self
                .current_tags()
                .map(|t| t.key_id.to_string())
                .unwrap_or_default(),
            new_hint: current.value.hint(),
            secret_id: format!(
                "{}/secrets/{}/{}",
                self.ctx.cloud.vault_url(&kv.vault),
                kv.secret,
                current.version
            ),
            old_secret_removed_after: Some(self.now + cred.grace),
            certificate_thumbprint: None,
        })
    }

    async fn complete_propagation(&self, remove_after: DateTime<Utc>) -> Result<Done, StepError> {
        let ctx = self.ctx;
        let mut t = self.rotation_state()?;
        // Prove what consumers now read: the value as Key Vault returns it.
        let stored = ctx
            .azure
            .vault_latest(&self.cred.key_vault)
            .await
            .map_err(az("read the value back from Key Vault"))?
            .ok_or_else(|| StepError::NotConfirmed("the Key Vault secret vanished".into()))?;
        // The same bytes Entra accepted in this run's rotation need no second token request.
        let accepted_here = ctx
            .accepted
            .lock()
            .is_ok_and(|a| a.as_ref() == Some(&stored.value));
        let proof = if accepted_here {
            "is the value Entra accepted in this run's rotation".to_string()
        } else {
            let tenant = tenant_of(self.cred, ctx);
            let attempts = verify_secret(ctx, self.app.app_id, tenant, &stored.value).await?;
            format!("gets a token (attempt {attempts})")
        };
        t.phase = Phase::Propagated;
        t.remove_after = Some(remove_after);
        let tags = self.retag(t, TagWrite::Written).await?;
        Ok(tagged(
            format!(
                "verified: the value in Key Vault version {} {proof}; the previous secret \
                 goes after {}",
                stored.version,
                remove_after.format("%Y-%m-%d %H:%M UTC")
            ),
            tags,
        ))
    }

    async fn remove_password(
        &self,
        key_id: Uuid,
        reason: &RemoveReason,
    ) -> Result<Done, StepError> {
        if Some(key_id) == current_key_id(self.observed) {
            return Err(StepError::Invariant(format!(
                "password {key_id} is the one in Key Vault"
            )));
        }
        let done = match self
            .ctx
            .azure
            .remove_password(self.app.object_id, key_id)
            .await
        {
            Ok(()) => format!(
                "removed password {key_id} ({})",
                describe_remove_reason(reason)
            ),
            Err(PortError::NotFound(_)) => format!("password {key_id} was already gone"),
            Err(e) => return Err(az("removePassword")(e)),
        };
        // Only the superseded password can be one a connection still used: an orphan
        // nobody holds, an expired one authenticates nobody (and a connection already
        // failing on it must not stop the rotation that will fix it).
        let health = match reason {
            RemoveReason::Superseded => connections_after_removal(self.ctx, self.cred).await,
            RemoveReason::Orphan | RemoveReason::ExpiredUnmanaged => Vec::new(),
        };
        if !health.is_empty() {
            return Err(StepError::NotConfirmed(format!(
                "{done}; now failing: {}",
                health.join("; ")
            )));
        }
        Ok(Done {
            detail: done,
            learnt: Learnt {
                removed: Some(key_id),
                ..Learnt::default()
            },
        })
    }

    async fn mark_retired(&self) -> Result<Done, StepError> {
        let mut t = self.rotation_state()?;
        let kept = t
            .previous_key_id
            .filter(|k| self.app.passwords.iter().any(|p| p.key_id == *k));
        t.phase = Phase::Retired;
        t.previous_key_id = None;
        let tags = self.retag(t, TagWrite::Written).await?;
        let detail = match kept {
            Some(k) => format!(
                "rotation complete; the previous password {k} was not created by \
                 secret-rotator and is left in place until it expires"
            ),
            None => "rotation complete: the previous secret is gone".into(),
        };
        Ok(tagged(detail, tags))
    }
}

/// How long a consumer write waits for another writer of the same resource: longer than a
/// blob lease (60 s), so the lease of a crashed holder lapses before the wait ends.
const RESOURCE_LOCK_WAIT: Duration = Duration::from_secs(75);

/// The blob lease (`locks/{name}`) serialising writers of one site or slot across credentials
/// and instances: a 64-bit FNV-1a hash (stable across builds) of its lower-cased ARM id (names
/// are case-insensitive in ARM; an id may hold characters a blob name would need escaped).
pub fn resource_lock_name(site: &ArmResource) -> String {
    let mut id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
        site.subscription, site.resource_group, site.name
    );
    if let Some(slot) = &site.slot {
        id.push_str(&format!("/slots/{slot}"));
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("resource-{h:016x}")
}

/// Takes the write lease of `site`, waiting while another writer (credential or instance)
/// holds it.
pub(crate) async fn lock_resource(
    ctx: &ExecContext<'_>,
    site: &ArmResource,
) -> Result<Box<dyn LeaseGuard>, StepError> {
    let name = resource_lock_name(site);
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match ctx.store.lease(&name).await {
            Ok(l) => return Ok(l),
            Err(PortError::Busy(_)) if started.elapsed() + backoff < RESOURCE_LOCK_WAIT => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(az(LOCK)(e)),
        }
    }
}

/// `fact`: what this run's observation read of the consumer, when it spares a read here. A
/// versionless reference is only refreshed (App Service's settings are not written, so neither
/// the site's lease nor a fresh read of its settings is needed); an encrypted variable is only
/// patched. An app setting that is written is always read afresh under the lease.
async fn update_consumer(
    ctx: &ExecContext<'_>,
    cred: &CredentialPolicy,
    consumer: &Consumer,
    current: &crate::engine::ports::VaultSecret,
    fact: ConsumerFact,
) -> Result<String, StepError> {
    let site = match (consumer, fact) {
        (Consumer::AppSettingKeyVaultRef { site, setting }, ConsumerFact::VersionlessReference) => {
            ctx.azure
                .refresh_references(site)
                .await
                .map_err(az("refresh Key Vault references"))?;
            let how = "refreshed the versionless reference";
            return confirm_reference(
                ctx,
                &consumer.describe(),
                site,
                setting,
                &current.version,
                how,
            )
            .await;
        }
        (Consumer::AutomationVariable { account, variable }, ConsumerFact::EncryptedVariable) => {
            match ctx
                .azure
                .update_automation_variable(account, variable, &current.value)
                .await
            {
                Ok(()) => {
                    return Ok(format!(
                        "{}: wrote the new value into the encrypted variable",
                        consumer.describe()
                    ));
                }
                // Deleted since it was read: the full path creates it encrypted.
                Err(PortError::NotFound(_)) => {
                    return update_other_consumer(ctx, consumer, current).await;
                }
                Err(e) => return Err(az("update the Automation variable")(e)),
            }
        }
        (
            Consumer::AppSettingKeyVaultRef { site, .. } | Consumer::AppSettingValue { site, .. },
            _,
        ) => site,
        _ => return update_other_consumer(ctx, consumer, current).await,
    };
    let lease = lock_resource(ctx, site).await?;
    let result = update_setting_consumer(ctx, cred, consumer, current).await;
    lease.release().await;
    result
}

/// An app-setting consumer, under its site's write lease: every read here is fresh.
async fn update_setting_consumer(
    ctx: &ExecContext<'_>,
    cred: &CredentialPolicy,
    consumer: &Consumer,
    current: &crate::engine::ports::VaultSecret,
) -> Result<String, StepError> {
    let kv = &cred.key_vault;
    if let Some(moved) = moved_off_for_certificate(ctx, cred, consumer).await? {
        return Ok(moved);
    }
    match consumer {
        Consumer::AppSettingKeyVaultRef { site, setting } => {
            let raw = ctx
                .azure
                .app_setting(site, setting)
                .await
                .map_err(az("read app settings"))?;
            let parsed = raw
                .as_ref()
                .and_then(|r| KeyVaultReference::parse(r.expose()))
                .filter(|r| r.points_at(&kv.vault, &kv.secret));
            let how = match parsed {
                Some(KeyVaultReference { version: None, .. }) => {
                    ctx.azure
                        .refresh_references(site)
                        .await
                        .map_err(az("refresh Key Vault references"))?;
                    "refreshed the versionless reference"
                }
                Some(KeyVaultReference {
                    version: Some(_), ..
                }) => {
                    let pinned = KeyVaultReference::pinned(
                        ctx.cloud,
                        &kv.vault,
                        &kv.secret,
                        &current.version,
                    );
                    ctx.azure
                        .set_app_setting(site, setting, &SecretValue::new(pinned))
                        .await
                        .map_err(az("write app settings"))?;
                    "re-pinned the reference to the new version"
                }
                None => {
                    let reference = format!(
                        "@Microsoft.KeyVault(VaultName={};SecretName={})",
                        kv.vault, kv.secret
                    );
                    ctx.azure
                        .set_app_setting(site, setting, &SecretValue::new(reference))
                        .await
                        .map_err(az("write app settings"))?;
                    "wrote a versionless Key Vault reference"
                }
            };
            confirm_reference(
                ctx,
                &consumer.describe(),
                site,
                setting,
                &current.version,
                how,
            )
            .await
        }
        Consumer::AppSettingValue { site, setting } => {
            // The port reads afresh, writes and reads every setting back (see the module docs).
            ctx.azure
                .set_app_setting(site, setting, &current.value)
                .await
                .map_err(az("write app settings"))?;
            Ok(format!("{}: wrote the new value", consumer.describe()))
        }
        _ => update_other_consumer(ctx, consumer, current).await,
    }
}

/// A setting of a secret a certificate replaces that is gone: its owner moved it off the
/// secret, so it is left gone (the certificate's conversion counts it as moved).
async fn moved_off_for_certificate(
    ctx: &ExecContext<'_>,
    cred: &CredentialPolicy,
    consumer: &Consumer,
) -> Result<Option<String>, StepError> {
    let (Consumer::AppSettingKeyVaultRef { site, setting }
    | Consumer::AppSettingValue { site, setting }) = consumer
    else {
        return Ok(None);
    };
    if !ctx.converting.contains(&cred.name.as_str()) {
        return Ok(None);
    }
    let raw = ctx
        .azure
        .app_setting(site, setting)
        .await
        .map_err(az("read app settings"))?;
    Ok(raw.is_none().then(|| {
        format!(
            "{}: gone — moved off the secret for the certificate credential that replaces it; not written back",
            consumer.describe()
        )
    }))
}

/// Consumers that are not app settings: each is its own resource with its own write API.
async fn update_other_consumer(
    ctx: &ExecContext<'_>,
    consumer: &Consumer,
    current: &crate::engine::ports::VaultSecret,
) -> Result<String, StepError> {
    match consumer {
        Consumer::ApiConnection {
            connection,
            parameter,
        } => {
            let st = ctx
                .azure
                .set_connection_parameter(connection, parameter, &current.value)
                .await
                .map_err(az("update the API connection"))?;
            if !st.connected {
                return Err(StepError::NotConfirmed(format!(
                    "{}: updated, but its status is not Connected: {}",
                    consumer.describe(),
                    st.message.unwrap_or_default()
                )));
            }
            // While the previous password is valid, Connected does not prove the connection
            // holds the new one: it is checked again right after that password is removed.
            Ok(format!(
                "{}: written, unconfirmed: status Connected, which proves nothing while the \
                 previous secret is still valid; checked again once it is removed",
                consumer.describe()
            ))
        }
        Consumer::AutomationVariable { account, variable } => {
            let done = ctx
                .azure
                .set_automation_variable(account, variable, &current.value)
                .await
                .map_err(az("update the Automation variable"))?;
            let what = match done {
                SetVariableOutcome::Updated => "wrote the new value into the encrypted variable",
                SetVariableOutcome::Created => "created the variable encrypted with the new value",
                SetVariableOutcome::RefusedUnencrypted => {
                    return Err(StepError::Blocked(format!(
                        "{}: nothing written: {}",
                        consumer.describe(),
                        unencrypted_variable(variable)
                    )));
                }
            };
            Ok(format!("{}: {what}", consumer.describe()))
        }
        Consumer::NotifyOnly { .. } => Err(StepError::Invariant(
            "a notify-only consumer is told, not written".into(),
        )),
        Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. } => Err(
            StepError::Invariant("an app setting is written under its site's lease".into()),
        ),
    }
}

/// How many times a Key Vault reference's status is read after a refresh before the rotator
/// leaves it for the next run (resolution may be asynchronous: the docs call refresh "force
/// resolution", not synchronous).
const REFERENCE_POLLS: u32 = 3;

/// Confirms what App Service reports for a reference after the rotator wrote or refreshed it:
/// `activeVersion` = the new version → confirmed; no `activeVersion` but `Resolved` → written,
/// unconfirmed (the field is absent from the spec's examples and captured answers); another
/// version, or a "not found" from before the version existed → polled a bounded number of
/// times, then [`StepError::Pending`]; any other status → [`StepError::NotConfirmed`].
pub(crate) async fn confirm_reference(
    ctx: &ExecContext<'_>,
    consumer: &str,
    site: &crate::policy::ArmResource,
    setting: &str,
    version: &str,
    how: &str,
) -> Result<String, StepError> {
    let mut backoff = ctx.verify.first_backoff;
    for poll in 1..=REFERENCE_POLLS {
        let status = ctx
            .azure
            .reference_status(site, setting)
            .await
            .map_err(az("read Key Vault reference status"))?;
        match status {
            Some(s) if s.active_version.as_deref() == Some(version) => {
                return Ok(format!(
                    "{consumer}: {how}; App Service resolves version {version}"
                ));
            }
            Some(s) if s.active_version.is_none() && s.status == "Resolved" => {
                return Ok(format!(
                    "{consumer}: {how}; written, unconfirmed: App Service reports Resolved but not \
                     which version (no activeVersion)"
                ));
            }
            Some(s) if s.status == "Resolved" && poll < REFERENCE_POLLS => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ctx.verify.max_backoff);
            }
            Some(s) if s.status == "Resolved" => {
                return Err(StepError::Pending(format!(
                    "{consumer}: {how}, but App Service still resolves version {} after {poll} \
                     reads; checked again on the next run",
                    s.active_version.unwrap_or_default()
                )));
            }
            Some(s) if predates_the_version(&s.status) && poll < REFERENCE_POLLS => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ctx.verify.max_backoff);
            }
            Some(s) if predates_the_version(&s.status) => {
                return Err(StepError::Pending(format!(
                    "{}; version {version} exists, so App Service has not re-read the reference \
                     yet (it resolves a refresh asynchronously); checked again on the next run — \
                     if it persists, check the reference and the vault's network rules",
                    describe_reference(consumer, how, Some(s))
                )));
            }
            other => {
                return Err(StepError::NotConfirmed(describe_reference(
                    consumer, how, other,
                )));
            }
        }
    }
    Err(StepError::Invariant("no reference status was read".into()))
}

/// Whether a failed status says only that the secret or version did not exist when App Service
/// last resolved the reference. The rotator has just stored that version (it holds its id), so
/// this is App Service's cache from before — the same evidence as a previous `activeVersion` —
/// not a broken reference. Resolution after a refresh may be asynchronous (uncertainty
/// `referenceActiveVersion=late`; campaign seed 9700073 found a first enrolment reported as a
/// reference the site could not read).
fn predates_the_version(status: &str) -> bool {
    matches!(status, "SecretNotFound" | "SecretVersionNotFound")
}

fn describe_reference(
    consumer: &str,
    how: &str,
    status: Option<crate::engine::ports::ReferenceStatus>,
) -> String {
    format!(
        "{consumer}: {how}, but App Service reports {}",
        status
            .map(|s| format!(
                "{} with version {}{}",
                s.status,
                s.active_version.unwrap_or_else(|| "none".into()),
                s.details.map(|d| format!(" ({d})")).unwrap_or_default()
            ))
            .unwrap_or_else(|| "no status".into())
    )
}

/// The API connections that fail now that a password is gone (their `Connected` during grace
/// proved nothing): one sentence each, empty when all are healthy.
async fn connections_after_removal(ctx: &ExecContext<'_>, cred: &CredentialPolicy) -> Vec<String> {
    let mut failing = Vec::new();
    for consumer in &cred.consumers {
        let Consumer::ApiConnection { connection, .. } = consumer else {
            continue;
        };
        match ctx.azure.connection_status(connection).await {
            Ok(st) if st.connected => {}
            Ok(st) => failing.push(format!(
                "{} reports {}",
                consumer.describe(),
                st.message.unwrap_or_else(|| "an error".into())
            )),
            Err(e) => failing.push(format!(
                "{}: its status cannot be read ({e})",
                consumer.describe()
            )),
        }
    }
    failing
}

fn describe_reason(r: &RotateReason) -> String {
    match r {
        RotateReason::NotStored => "the Key Vault secret did not exist".into(),
        RotateReason::CurrentPasswordMissing => "the stored value's password was gone".into(),
        RotateReason::ExpiringSoon { expires } => {
            format!("it expires {}", expires.format("%Y-%m-%d"))
        }
        RotateReason::Expired { expired } => format!("it expired {}", expired.format("%Y-%m-%d")),
        RotateReason::CurrentValueRefused => "Entra refused the stored value".into(),
        RotateReason::UnknownCurrentPassword { reason } => reason.clone(),
        RotateReason::Forced => "asked for on demand".into(),
    }
}

fn describe_remove_reason(r: &RemoveReason) -> &'static str {
    match r {
        RemoveReason::Superseded => "replaced, grace period over",
        RemoveReason::Orphan => "orphan of an interrupted run, never stored",
        RemoveReason::ExpiredUnmanaged => "expired, not created by the rotator, policy allows",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, slot: Option<&str>) -> ArmResource {
        ArmResource {
            subscription: "7c9e6679-7425-40de-944b-e07fc1f90ae7".into(),
            resource_group: "rg-Shared".into(),
            name: name.into(),
            slot: slot.map(Into::into),
        }
    }

    #[test]
    fn one_lease_per_site_or_slot_whatever_the_case() {
        let a = resource_lock_name(&site("Func-A", None));
        assert_eq!(a, resource_lock_name(&site("func-a", None)));
        assert!(a.starts_with("resource-") && a.len() == "resource-".len() + 16);
        assert_ne!(a, resource_lock_name(&site("func-b", None)));
        assert_ne!(a, resource_lock_name(&site("func-a", Some("staging"))));
        assert_eq!(
            resource_lock_name(&site("func-a", Some("Staging"))),
            resource_lock_name(&site("FUNC-A", Some("staging")))
        );
    }

    #[test]
    fn only_the_consumers_own_failures_hold_it() {
        let denied = || PortError::AccessDenied("403".into());
        assert!(az("write app settings")(denied()).is_consumers());
        assert!(StepError::NotConfirmed("not resolved".into()).is_consumers());
        assert!(!az(RETAG)(denied()).is_consumers());
        assert!(!az(LOCK)(denied()).is_consumers());
    }
}
