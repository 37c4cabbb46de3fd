//! Use case: the probe, `SelfTest`/`Test` ([`Engine::self_test_report`]) — the rotator's
//! storage answers, and for each enrolled credential: its Key Vault value exists, is enabled
//! and gets a token from Entra, every consumer is readable and in sync, it is not overdue, and
//! its last run did not fail. Each failure has its own `resultCode` ([`ResultCode`]).
//!
//! Guarantees: read-only; at most one token request per secret per [`PROBE_MEMO_TTL`] while the
//! Key Vault version is unchanged ([`ProbeMemo`]), so a monitoring tool polling the probe does
//! not hammer Entra; a new version is asked at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::engine::context::Engine;
use crate::engine::observe::{Observed, Observer};
use crate::engine::ports::PortError;
use crate::engine::records::RecordPath;
use crate::engine::report::{Check, CredentialOutcome, ResultCode, SelfTestReport};
use crate::engine::usecase::status::{blank_status, fill_status};
use crate::planner::{ConsumerSync, VaultState};
use crate::policy::CredentialPolicy;

/// What `Test` last learnt from Entra for each credential: `(Key Vault version, accepted, when)`.
/// Reused for [`PROBE_MEMO_TTL`] while the version is unchanged, so polling the probe makes at
/// most one token request per secret per TTL; a new version (a rotation, a fix) is asked again.
#[derive(Debug, Default)]
pub struct ProbeMemo(std::sync::Mutex<HashMap<String, ProbeAnswer>>);

/// One credential's last probe: the Key Vault version, whether Entra accepted it, and when.
type ProbeAnswer = (String, bool, DateTime<Utc>);

/// How long a probe's token answer stands for an unchanged Key Vault version.
pub const PROBE_MEMO_TTL: chrono::Duration = chrono::Duration::minutes(5);

impl ProbeMemo {
    fn get(&self, credential: &str, now: DateTime<Utc>) -> Option<(String, bool)> {
        let map = self.0.lock().ok()?;
        let (version, ok, at) = map.get(credential)?;
        (now >= *at && now - *at < PROBE_MEMO_TTL).then(|| (version.clone(), *ok))
    }

    /// The last answer for `credential` if it is about `version` and still stands.
    pub(crate) fn recall(
        &self,
        credential: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Option<bool> {
        self.get(credential, now)
            .filter(|(v, _)| v == version)
            .map(|(_, ok)| ok)
    }

    /// Keeps Entra's answer for `credential`'s `version` (a certificate's, say).
    pub(crate) fn remember(&self, credential: &str, version: &str, ok: bool, now: DateTime<Utc>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(credential.to_string(), (version.to_string(), ok, now));
        }
    }

    fn put(&self, credential: &str, observed: &Observed, now: DateTime<Utc>) {
        let (VaultState::Current(v), Some(ok)) = (
            &observed.observation.vault,
            observed.observation.current_value_accepted,
        ) else {
            return;
        };
        if let Ok(mut map) = self.0.lock() {
            map.insert(credential.to_string(), (v.version.clone(), ok, now));
        }
    }
}

/// A failed check: its code and what is wrong.
struct Failure(ResultCode, String);

impl Engine {
    pub async fn self_test_report(&self, now: DateTime<Utc>) -> SelfTestReport {
        let storage = match self.store.get_json(&RecordPath::Probe.path()).await {
            Ok(_) => Check {
                name: "storage".into(),
                ok: true,
                result_code: ResultCode::Ok,
                message: "the rotator's storage account answers".into(),
            },
            Err(e) => Check {
                name: "storage".into(),
                ok: false,
                result_code: ResultCode::StorageAccess,
                message: format!("the rotator's storage account: {e}"),
            },
        };
        let mut checks = vec![storage];
        for cred in &self.policy.credentials {
            checks.push(self.check_credential(cred, now).await);
        }
        for cert in &self.policy.certificates {
            checks.push(self.check_certificate(cert, now).await);
        }
        SelfTestReport { checks }
    }

    async fn check_credential(&self, cred: &CredentialPolicy, now: DateTime<Utc>) -> Check {
        let name = format!("credential {}", cred.name);
        // A secret a certificate has replaced is gone on purpose: nothing to probe.
        if let Some(replaced) = self.replaced_by_certificate(cred).await {
            return Check {
                name,
                ok: true,
                result_code: ResultCode::Ok,
                message: replaced.error.unwrap_or_default(),
            };
        }
        match self.probe_credential(cred, now).await {
            Ok(message) => Check {
                name,
                ok: true,
                result_code: ResultCode::Ok,
                message,
            },
            Err(Failure(result_code, message)) => Check {
                name,
                ok: false,
                result_code,
                message,
            },
        }
    }

    /// The checks of one credential, in order; the first that fails answers.
    async fn probe_credential(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let observed = self.probe_observe(cred, now).await?;
        check_value(cred, &observed)?;
        check_consumers(cred, &observed)?;
        let mut st = blank_status(cred, None);
        fill_status(&mut st, cred, &observed, now);
        if let Some(exp) = st.expires
            && exp - cred.renew_before + chrono::Duration::days(1) <= now
        {
            return Err(Failure(
                ResultCode::RotationOverdue,
                format!(
                    "the secret expires {} and is inside its renewal window",
                    exp.format("%Y-%m-%d")
                ),
            ));
        }
        if self.last_outcome(cred).await == Some(CredentialOutcome::Failed) {
            return Err(Failure(
                ResultCode::RotationFailed,
                "the last rotation run failed; see Status".into(),
            ));
        }
        Ok(format!(
            "the value in {}/{} gets a token{}",
            cred.key_vault.vault,
            cred.key_vault.secret,
            st.days_left
                .map(|d| format!("; {d} days left"))
                .unwrap_or_default()
        ))
    }

    /// Observes the credential with its value probed (or Entra's memoised answer).
    async fn probe_observe(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
    ) -> Result<Observed, Failure> {
        let mut observer = Observer::new(cred, true);
        if let Some((version, ok)) = self.probes.get(&cred.name, now) {
            observer = observer.knowing(version, ok);
        }
        let observed = observer
            .observe(self.azure.as_ref(), cred, self.tenant_for(cred))
            .await
            .map_err(|e| match e {
                PortError::AccessDenied(m) => {
                    Failure(ResultCode::KeyVaultAccess, format!("access denied: {m}"))
                }
                PortError::Disabled(m) => Failure(ResultCode::SecretDisabled, m),
                PortError::Refused { code, message } => Failure(
                    ResultCode::IdentityUnavailable,
                    format!("AADSTS{code}: {message}"),
                ),
                e => Failure(ResultCode::Internal, e.to_string()),
            })?;
        self.probes.put(&cred.name, &observed, now);
        Ok(observed)
    }
}

/// The application is readable, the Key Vault value exists and Entra accepts it.
fn check_value(cred: &CredentialPolicy, observed: &Observed) -> Result<(), Failure> {
    if let Err(why) = &observed.observation.app {
        return Err(Failure(ResultCode::GraphAccess, why.clone()));
    }
    let (v, s) = (&cred.key_vault.vault, &cred.key_vault.secret);
    if observed.secret.is_none() {
        let why = match observed.observation.vault {
            VaultState::SoftDeleted { .. } => format!(
                "is soft-deleted: recover it (az keyvault secret recover --vault-name {v} --name {s}) or purge it"
            ),
            _ => "does not exist".to_string(),
        };
        return Err(Failure(
            ResultCode::SecretMissing,
            format!("ClientSecret not found: Key Vault secret {v}/{s} {why}"),
        ));
    }
    if observed.observation.current_value_accepted == Some(false) {
        return Err(Failure(
            ResultCode::CredentialRefused,
            format!("Entra refuses the value in {v}/{s}"),
        ));
    }
    Ok(())
}

/// Every consumer is readable (else `ConsumerAccess`) and in sync (else `ConsumerOutOfSync`).
fn check_consumers(cred: &CredentialPolicy, observed: &Observed) -> Result<(), Failure> {
    let blocked = consumer_problems(cred, observed, |s| match s {
        ConsumerSync::Blocked { reason } => Some(reason.clone()),
        _ => None,
    });
    if !blocked.is_empty() {
        return Err(Failure(ResultCode::ConsumerAccess, blocked.join("; ")));
    }
    let out_of_sync = consumer_problems(cred, observed, |s| match s {
        ConsumerSync::OutOfSync { detail } => Some(detail.clone()),
        ConsumerSync::NotObservable {
            healthy: Some(false),
        } => Some("unhealthy".to_string()),
        _ => None,
    });
    if !out_of_sync.is_empty() {
        return Err(Failure(
            ResultCode::ConsumerOutOfSync,
            out_of_sync.join("; "),
        ));
    }
    Ok(())
}

/// "consumer: problem" for each consumer whose observed sync `problem` describes.
fn consumer_problems(
    cred: &CredentialPolicy,
    observed: &Observed,
    problem: impl Fn(&ConsumerSync) -> Option<String>,
) -> Vec<String> {
    cred.consumers
        .iter()
        .zip(&observed.observation.consumers)
        .filter_map(|(c, o)| problem(&o.sync).map(|p| format!("{}: {p}", c.describe())))
        .collect()
}
