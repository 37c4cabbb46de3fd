//! One function per `CertStep`, each idempotent and against Azure only through the ports: a
//! step repeated after a crash finds its work done (a version already requested is pending, a
//! key already on the application is proven instead of added again, tags already written are
//! written the same). The private key never comes here: Key Vault signs proofs and
//! assertions; consumers get a Key Vault reference or a thumbprint, never the PFX.

use std::time::Instant;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::observe::{CertObserved, names_thumbprint};
use super::ports::{AssertionAnswer, CertificatePorts, KeyAdded, KeyToAdd, KeyWriteVia};
use super::tags;
use crate::engine::executor::{ExecContext, StepError, az, confirm_reference, lock_resource};
use crate::engine::kvref::KeyVaultReference;
use crate::engine::ports::{ManualStep, PortError};
use crate::planner::certificate::*;
use crate::planner::{PasswordMarker, Phase, StepKind};
use crate::policy::{CertificateConsumer, CertificateCredentialPolicy};
use crate::secret::SecretValue;

/// What a certificate step runs with.
pub struct CertExec<'a> {
    pub ctx: ExecContext<'a>,
    pub certs: &'a dyn CertificatePorts,
    pub policy: &'a CertificateCredentialPolicy,
    pub now: DateTime<Utc>,
}

/// The report's name for a step.
pub fn kind_of(step: &CertStep) -> StepKind {
    match step {
        CertStep::RequestVersion { .. } => StepKind::RequestCertificate,
        CertStep::AdoptVersion { .. } | CertStep::AdoptCurrent { .. } => StepKind::AdoptCertificate,
        CertStep::AddKey { .. } => StepKind::AddKey,
        CertStep::Prove { .. } => StepKind::ProveKey,
        CertStep::UpdateConsumer { .. } => StepKind::UpdateConsumer,
        CertStep::Notify { .. } => StepKind::Notify,
        CertStep::CompletePropagation { .. } => StepKind::CompletePropagation,
        CertStep::RemoveKey { .. } => StepKind::RemoveKey,
        CertStep::MarkRetired => StepKind::MarkRetired,
        CertStep::ReleaseSecret { .. } => StepKind::ReleaseSecret,
        CertStep::RemoveClientSecret { .. } => StepKind::RemoveClientSecret,
        CertStep::MarkConverted => StepKind::MarkConverted,
    }
}

const RETAG: &str = "update the certificate version's tags";

impl CertExec<'_> {
    /// Performs one step; the answer is a sentence for the report (ids, never key material).
    pub async fn perform(&self, seen: &CertObserved, step: &CertStep) -> Result<String, StepError> {
        match step {
            CertStep::RequestVersion { .. } => self.request().await,
            CertStep::AdoptVersion { version } => {
                self.retag(seen, version, VersionOrigin::Adopted, None)
                    .await?;
                Ok(format!("version {version} adopted"))
            }
            CertStep::AdoptCurrent { version, key_id } => {
                let state = fresh(*key_id, None, Phase::Retired, None);
                self.retag(seen, version, VersionOrigin::Adopted, Some(&state))
                    .await?;
                Ok(format!(
                    "version {version} adopted as current (key {key_id})"
                ))
            }
            CertStep::AddKey { version, method } => self.add_key(seen, version, method).await,
            CertStep::Prove {
                version,
                key_id,
                previous_key_id,
            } => self.prove(seen, version, *key_id, *previous_key_id).await,
            CertStep::UpdateConsumer { index, .. } | CertStep::Notify { index, .. } => {
                self.consumer(seen, *index).await
            }
            CertStep::CompletePropagation { remove_after } => {
                let (v, mut t) = current(seen)?;
                self.verify(seen, &v).await?;
                t.phase = Phase::Propagated;
                t.remove_after = Some(*remove_after);
                self.retag_state(seen, &v, &t).await?;
                Ok(format!("version {v} accepted again and marked propagated"))
            }
            CertStep::RemoveKey { key_id, method, .. } => {
                self.remove_key(seen, *key_id, method).await
            }
            CertStep::MarkRetired => self.set_state(seen, |t| t.phase = Phase::Retired).await,
            CertStep::ReleaseSecret { remove_after } => {
                let r = *remove_after;
                let c = Some(ConversionPhase::SecretReleased { remove_after: r });
                self.set_state(seen, |t| t.conversion = c).await
            }
            CertStep::RemoveClientSecret { credential, key_id } => {
                let object_id = object_id(seen)?;
                match self.ctx.azure.remove_password(object_id, *key_id).await {
                    Ok(()) | Err(PortError::NotFound(_)) => {
                        Ok(format!("password {key_id} of {credential} removed"))
                    }
                    Err(e) => Err(az("removePassword")(e)),
                }
            }
            CertStep::MarkConverted => {
                let c = Some(ConversionPhase::Converted);
                self.set_state(seen, |t| t.conversion = c).await
            }
        }
    }

    async fn request(&self) -> Result<String, StepError> {
        let t = tags::render(
            &Default::default(),
            self.policy,
            VersionOrigin::Requested,
            None,
        )
        .map_err(StepError::TagBudget)?;
        self.certs
            .cert_create(self.policy, &t)
            .await
            .map_err(az("create a certificate version"))?;
        Ok("asked Key Vault for a new certificate version".into())
    }

    async fn add_key(
        &self,
        seen: &CertObserved,
        version: &CertVersionId,
        method: &KeyWrite,
    ) -> Result<String, StepError> {
        let object_id = object_id(seen)?;
        let key = KeyToAdd {
            certificate: &self.policy.certificate,
            version: &version.0,
            display_name: PasswordMarker::display_name(&self.policy.name, self.now),
        };
        let added = self
            .certs
            .add_key(object_id, key, self.via(method))
            .await
            .map_err(az("add the key to the application"))?;
        match added {
            KeyAdded::Added(id) => Ok(format!("version {version}'s key added as {id}")),
            KeyAdded::Refused(r) => {
                let base = seen
                    .version_tags
                    .get(&version.0)
                    .cloned()
                    .unwrap_or_default();
                let t = tags::with_refusal(&base, r.kind, self.now, &r.detail);
                self.certs
                    .cert_update_tags(&self.policy.certificate, &version.0, &t)
                    .await
                    .map_err(az(RETAG))?;
                Ok(format!(
                    "Graph refused version {version}'s key: {}",
                    r.detail
                ))
            }
        }
    }

    async fn prove(
        &self,
        seen: &CertObserved,
        version: &CertVersionId,
        key_id: Uuid,
        previous: Option<Uuid>,
    ) -> Result<String, StepError> {
        let attempts = self.verify(seen, version).await?;
        let conversion = current(seen).ok().and_then(|(_, t)| t.conversion);
        let mut state = fresh(key_id, previous, Phase::Stored, None);
        state.conversion = conversion;
        let origin = origin_of(seen, version);
        self.retag(seen, version, origin, Some(&state)).await?;
        Ok(format!(
            "Entra accepted an assertion signed by version {version} (attempt {attempts}); it is current"
        ))
    }

    /// Token requests with a client assertion signed by `version`'s key until Entra accepts
    /// it (through its replication delay) or the verify policy's timeout.
    async fn verify(&self, seen: &CertObserved, version: &CertVersionId) -> Result<u32, StepError> {
        let app_id = seen
            .app_id
            .ok_or_else(|| StepError::Invariant("the application was not read".into()))?;
        let tenant = self.policy.tenant_id.as_deref().unwrap_or(self.ctx.tenant);
        let started = Instant::now();
        let mut backoff = self.ctx.verify.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let answer = self
                .certs
                .assertion_token(tenant, app_id, &self.policy.certificate, &version.0)
                .await;
            let last = match answer {
                Ok(AssertionAnswer::Accepted) => return Ok(attempts),
                Ok(AssertionAnswer::NotReplicated) => {
                    "Entra does not know the new key yet (AADSTS700027)".to_string()
                }
                Ok(AssertionAnswer::Refused { code }) => {
                    return Err(StepError::NotConfirmed(format!(
                        "Entra refused an assertion signed by version {version} (AADSTS{code})"
                    )));
                }
                Err(e @ (PortError::Transient(_) | PortError::Throttled(_))) => e.to_string(),
                Err(e) => return Err(az("client assertion token request")(e)),
            };
            if started.elapsed() + backoff > self.ctx.verify.timeout {
                return Err(StepError::NotConfirmed(format!(
                    "{last}, still after {attempts} attempts"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.ctx.verify.max_backoff);
        }
    }

    async fn consumer(&self, seen: &CertObserved, index: usize) -> Result<String, StepError> {
        let c =
            self.policy.consumers.get(index).ok_or_else(|| {
                StepError::Invariant(format!("no consumer #{index} in the policy"))
            })?;
        let (version, thumb) = seen.current.clone().ok_or_else(|| {
            StepError::Invariant("no current version to move consumers to".into())
        })?;
        let done = match c {
            CertificateConsumer::AppSettingKeyVaultRef { site, .. }
            | CertificateConsumer::AppSettingThumbprint { site, .. } => {
                // The site's write lease: other credentials write the same settings map.
                let lease = lock_resource(&self.ctx, site).await?;
                let result = self.setting(seen, c, &version, thumb).await;
                lease.release().await;
                result?
            }
            CertificateConsumer::NotifyOnly {
                system,
                instructions,
            } => {
                let step = self.manual_step(seen, system, instructions, &version, thumb);
                let hooks = self
                    .ctx
                    .notifier
                    .manual_step(&step)
                    .await
                    .map_err(az("send the manual step"))?;
                format!("{} told (webhooks: {hooks})", c.describe())
            }
        };
        let id = c.id();
        self.set_state(seen, |t| {
            if !t.synced.contains(&id) {
                t.synced.push(id.clone());
            }
        })
        .await?;
        Ok(done)
    }

    /// Writes an app-setting consumer (under its site's lease): a Key Vault reference pinned
    /// to the version, confirmed with App Service's status of it; or the thumbprint.
    async fn setting(
        &self,
        seen: &CertObserved,
        c: &CertificateConsumer,
        version: &CertVersionId,
        thumb: Thumbprint,
    ) -> Result<String, StepError> {
        let write = |site, setting, value: String| async move {
            self.ctx
                .azure
                .set_app_setting(site, setting, &SecretValue::new(value))
                .await
                .map_err(az("set the app setting"))
        };
        match c {
            CertificateConsumer::AppSettingKeyVaultRef { site, setting } => {
                let kv = &self.policy.certificate;
                let held = self
                    .ctx
                    .azure
                    .app_setting(site, setting)
                    .await
                    .map_err(az("read the app setting"))?;
                let versionless = held
                    .as_ref()
                    .and_then(|v| KeyVaultReference::parse(v.expose()))
                    .is_some_and(|r| r.points_at(&kv.vault, &kv.name) && r.version.is_none());
                // A versionless reference stays one (its owner chose to follow the latest
                // version): App Service is told to read it again. Anything else is pinned.
                let how = if versionless {
                    self.ctx
                        .azure
                        .refresh_references(site)
                        .await
                        .map_err(az("refresh Key Vault references"))?;
                    "refreshed the versionless reference".to_string()
                } else {
                    let value =
                        KeyVaultReference::pinned(self.ctx.cloud, &kv.vault, &kv.name, &version.0);
                    write(site, setting, value).await?;
                    format!("pinned to version {version}")
                };
                confirm_reference(&self.ctx, &c.describe(), site, setting, &version.0, &how).await
            }
            CertificateConsumer::AppSettingThumbprint { site, setting } => {
                let held = self
                    .ctx
                    .azure
                    .app_setting(site, setting)
                    .await
                    .map_err(az("read the app setting"))?;
                let held = held.as_ref().map(|v| v.expose());
                write(site, setting, thumbprint_value(setting, held, seen, thumb)).await?;
                Ok(format!("{} now names thumbprint {thumb}", c.describe()))
            }
            CertificateConsumer::NotifyOnly { .. } => Err(StepError::Invariant(
                "a notify-only consumer has no setting".into(),
            )),
        }
    }

    /// What a person must do for a notify-only consumer: where to find the new version, by
    /// id and thumbprint (no key material: the person fetches it from Key Vault).
    fn manual_step(
        &self,
        seen: &CertObserved,
        system: &str,
        instructions: &str,
        version: &CertVersionId,
        thumb: Thumbprint,
    ) -> ManualStep {
        let kv = &self.policy.certificate;
        let state = current(seen).ok().map(|(_, t)| t);
        ManualStep {
            credential: self.policy.name.clone(),
            system: system.to_string(),
            instructions: instructions.to_string(),
            app_id: seen.app_id.map(|a| a.to_string()).unwrap_or_default(),
            new_key_id: state
                .as_ref()
                .map(|t| t.key_id.to_string())
                .unwrap_or_default(),
            new_hint: String::new(),
            secret_id: format!(
                "{}/certificates/{}/{version}",
                self.ctx.cloud.vault_url(&kv.vault),
                kv.name
            ),
            old_secret_removed_after: None,
            certificate_thumbprint: Some(thumb.to_string()),
        }
    }

    async fn remove_key(
        &self,
        seen: &CertObserved,
        key_id: Uuid,
        method: &KeyWrite,
    ) -> Result<String, StepError> {
        let object_id = object_id(seen)?;
        self.certs
            .remove_key(object_id, key_id, self.via(method))
            .await
            .map_err(az("remove the key from the application"))?;
        Ok(format!("key {key_id} removed from the application"))
    }

    fn via<'m>(&'m self, method: &'m KeyWrite) -> KeyWriteVia<'m> {
        match method {
            KeyWrite::WithProof { signer } => KeyWriteVia::Proof {
                certificate: &self.policy.certificate,
                signer: &signer.0,
            },
            KeyWrite::MergeWrite { keep } => KeyWriteVia::Merge { keep },
        }
    }

    /// Changes the current version's state and writes it.
    async fn set_state(
        &self,
        seen: &CertObserved,
        change: impl FnOnce(&mut CertRotationTags),
    ) -> Result<String, StepError> {
        let (v, mut t) = current(seen)?;
        change(&mut t);
        self.retag_state(seen, &v, &t).await?;
        Ok(format!("version {v}'s state recorded"))
    }

    async fn retag_state(
        &self,
        seen: &CertObserved,
        v: &CertVersionId,
        t: &CertRotationTags,
    ) -> Result<(), StepError> {
        self.retag(seen, v, origin_of(seen, v), Some(t)).await
    }

    async fn retag(
        &self,
        seen: &CertObserved,
        version: &CertVersionId,
        origin: VersionOrigin,
        state: Option<&CertRotationTags>,
    ) -> Result<(), StepError> {
        let base = seen
            .version_tags
            .get(&version.0)
            .cloned()
            .unwrap_or_default();
        let t = tags::render(&base, self.policy, origin, state).map_err(StepError::TagBudget)?;
        self.certs
            .cert_update_tags(&self.policy.certificate, &version.0, &t)
            .await
            .map_err(az(RETAG))?;
        Ok(())
    }
}

fn fresh(
    key_id: Uuid,
    previous_key_id: Option<Uuid>,
    phase: Phase,
    remove_after: Option<DateTime<Utc>>,
) -> CertRotationTags {
    CertRotationTags {
        key_id,
        previous_key_id,
        phase,
        remove_after,
        synced: Vec::new(),
        conversion: None,
    }
}

fn object_id(seen: &CertObserved) -> Result<Uuid, StepError> {
    seen.object_id
        .ok_or_else(|| StepError::Invariant("the application was not read".into()))
}

fn versions(seen: &CertObserved) -> &[CertVersion] {
    match &seen.observation.vault {
        CertVaultState::Present(c) => &c.versions,
        _ => &[],
    }
}

/// The current version and its state.
fn current(seen: &CertObserved) -> Result<(CertVersionId, CertRotationTags), StepError> {
    let (id, _) = seen
        .current
        .as_ref()
        .ok_or_else(|| StepError::Invariant("no current certificate version".into()))?;
    versions(seen)
        .iter()
        .find(|v| &v.version == id)
        .and_then(|v| v.tags.clone())
        .map(|t| (id.clone(), t))
        .ok_or_else(|| StepError::Invariant("the current version carries no state".into()))
}

fn origin_of(seen: &CertObserved, v: &CertVersionId) -> VersionOrigin {
    match versions(seen)
        .iter()
        .find(|x| &x.version == v)
        .map(|x| x.origin)
    {
        Some(VersionOrigin::Requested) => VersionOrigin::Requested,
        _ => VersionOrigin::Adopted,
    }
}

/// The thumbprint setting's new value. `WEBSITE_LOAD_CERTIFICATES` is a list (comma-separated
/// thumbprints, or `*`; App Service "Use a TLS/SSL certificate in your code"): the
/// certificate's other versions are replaced by the current one and every other entry is kept
/// (another certificate the site loads must not be lost). Any other setting holds one
/// thumbprint (an app's own `ClientCertificateThumbprint`): it becomes the current one.
fn thumbprint_value(
    setting: &str,
    held: Option<&str>,
    seen: &CertObserved,
    current: Thumbprint,
) -> String {
    let cur = current.to_string();
    let held = held.filter(|h| !h.trim().is_empty());
    let Some(held) = held.filter(|_| setting.eq_ignore_ascii_case("WEBSITE_LOAD_CERTIFICATES"))
    else {
        return cur;
    };
    if names_thumbprint(held, current) {
        return held.to_string();
    }
    let ours: Vec<String> = versions(seen)
        .iter()
        .map(|v| v.thumbprint.to_string())
        .collect();
    let mut parts: Vec<String> = held
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !ours.iter().any(|o| o.eq_ignore_ascii_case(p)))
        .map(str::to_string)
        .collect();
    parts.push(cur);
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(thumbs: &[u8]) -> CertObserved {
        let versions = thumbs
            .iter()
            .map(|n| CertVersion {
                version: CertVersionId(format!("{n:032x}")),
                thumbprint: Thumbprint([*n; 20]),
                created: None,
                not_before: None,
                expires: None,
                enabled: true,
                origin: VersionOrigin::Requested,
                tags: None,
            })
            .collect();
        CertObserved {
            observation: CertObservation {
                app: Err("not read".into()),
                vault: CertVaultState::Present(CertificateState {
                    versions,
                    pending: None,
                    exportable: true,
                }),
                current_accepted: None,
                consumers: vec![],
                add_refused: None,
                conversion: None,
            },
            object_id: None,
            app_id: None,
            version_tags: Default::default(),
            current: None,
        }
    }

    #[test]
    fn a_thumbprint_setting_gets_the_new_one_in_place_of_the_old_and_keeps_the_rest() {
        let s = seen(&[1, 2]);
        let (old, new) = (Thumbprint([1; 20]).to_string(), Thumbprint([2; 20]));
        let other = "ABCDEF0123456789ABCDEF0123456789ABCDEF01";
        let list =
            |held: Option<&str>| thumbprint_value("WEBSITE_LOAD_CERTIFICATES", held, &s, new);
        assert_eq!(list(None), new.to_string());
        assert_eq!(list(Some(" ")), new.to_string());
        assert_eq!(list(Some(&old)), new.to_string());
        assert_eq!(
            list(Some(&format!("{other},{}", old.to_lowercase()))),
            format!("{other},{new}")
        );
        // Another certificate the site loads is kept.
        assert_eq!(list(Some(other)), format!("{other},{new}"));
        // Already there (or `*`): unchanged.
        assert_eq!(list(Some("*")), "*");
        // A single-value setting becomes the current thumbprint.
        let one =
            |held: Option<&str>| thumbprint_value("ClientCertificateThumbprint", held, &s, new);
        assert_eq!(one(Some(other)), new.to_string());
        assert_eq!(one(Some(&old)), new.to_string());
    }
}
