//! Use case: `Status` ([`Engine::status_report`]) — each enrolled credential as observed now
//! (the password in use and its expiry, the rotation's phase, each consumer's sync, the last
//! run's outcome from [`crate::engine::records`]), each certificate credential
//! ([`Engine::certificates_status`], built by [`super::certificate_status`]), then the bounded
//! inventory of credentials nobody rotates ([`super::scan`]).
//!
//! Guarantees: read-only (no Azure write, no token request: the observation does not probe the
//! value); one observation per credential, never one per application; a credential that cannot
//! be observed is listed with its `problem`, never dropped.

use chrono::{DateTime, Utc};

use crate::engine::context::Engine;
use crate::engine::inventory::Enrolment;
use crate::engine::observe::{Observed, observe};
use crate::engine::records;
use crate::engine::report::{
    CertificateStatus, ConsumerStatus, CredentialOutcome, CredentialStatus, StatusReport,
};
use crate::engine::tags;
use crate::engine::usecase::certificate_status::{blank_certificate_status, certificate_status};
use crate::engine::usecase::scan::{learn_certificate, learn_enrolment};
use crate::planner::{ConsumerObservation, ConsumerSync, KeyIdentity, VaultState, VaultVersion};
use crate::policy::CredentialPolicy;

impl Engine {
    /// Every enrolled credential, then the credentials of the visible applications that
    /// nobody rotates (bounded to `status_inventory_limit` rows and `status_scan_budget`).
    pub async fn status_report(&self, now: DateTime<Utc>) -> StatusReport {
        let (credentials, mut enrolment) = self.credentials_status(now).await;
        let certificates = self.certificates_status(&mut enrolment, now).await;
        let unenrolled = self.unenrolled_inventory(&enrolment, now).await;
        StatusReport {
            now,
            credentials,
            certificates,
            unenrolled: Some(unenrolled),
        }
    }

    /// Every enrolled certificate credential's status (one observation each, no token
    /// request), recording in `enrolment` which keys each keeps.
    pub async fn certificates_status(
        &self,
        enrolment: &mut Enrolment,
        now: DateTime<Utc>,
    ) -> Vec<CertificateStatus> {
        let mut out = Vec::new();
        for cert in &self.policy.certificates {
            let last = self.last_outcome_of(&cert.name).await;
            let st = match self.observe_and_decide(cert, false, now).await {
                Ok((seen, d)) => {
                    learn_certificate(enrolment, cert, &seen.observation);
                    let secret = self
                        .policy
                        .credentials
                        .iter()
                        .find(|c| cert.replaces_secret.as_deref() == Some(c.name.as_str()));
                    certificate_status(cert, secret, &seen.observation, &d, last, now)
                }
                Err(e) => CertificateStatus {
                    problem: Some(format!("could not observe Azure: {e}")),
                    ..blank_certificate_status(cert, last)
                },
            };
            out.push(st);
        }
        out
    }

    /// Every enrolled credential's status, and what they say about which password each vault
    /// holds (one observation per credential, never one per application).
    pub async fn credentials_status(
        &self,
        now: DateTime<Utc>,
    ) -> (Vec<CredentialStatus>, Enrolment) {
        let mut credentials = Vec::new();
        let mut enrolment = Enrolment::from_policy(Some(&self.policy));
        for cred in &self.policy.credentials {
            let (st, seen) = self.credential_status(cred, now).await;
            if let Some(seen) = &seen {
                learn_enrolment(&mut enrolment, cred, seen);
            }
            credentials.push(st);
        }
        (credentials, enrolment)
    }

    /// The outcome of the credential's last run, as recorded (`None`: none readable).
    pub(crate) async fn last_outcome(&self, cred: &CredentialPolicy) -> Option<CredentialOutcome> {
        self.last_outcome_of(&cred.name).await
    }

    /// The same by credential name (secrets and certificates share the record layout).
    async fn last_outcome_of(&self, name: &str) -> Option<CredentialOutcome> {
        records::last_run(self.store.as_ref(), name)
            .await
            .map(|r| r.report.outcome)
    }

    async fn credential_status(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
    ) -> (CredentialStatus, Option<Observed>) {
        let mut st = blank_status(cred, self.last_outcome(cred).await);
        let observed = match observe(self.azure.as_ref(), cred, self.tenant_for(cred), false).await
        {
            Ok(o) => o,
            Err(e) => {
                st.problem = Some(e.to_string());
                return (st, None);
            }
        };
        fill_status(&mut st, cred, &observed, now);
        (st, Some(observed))
    }
}

/// A credential's status before anything is known of it.
pub(crate) fn blank_status(
    cred: &CredentialPolicy,
    last_outcome: Option<CredentialOutcome>,
) -> CredentialStatus {
    CredentialStatus {
        name: cred.name.clone(),
        app_id: None,
        display_name: None,
        key_id_in_use: None,
        key_id_source: None,
        expires: None,
        days_left: None,
        last_rotation: None,
        phase: None,
        consumers_in_sync: false,
        consumers: Vec::new(),
        next_due: None,
        problem: None,
        last_outcome,
    }
}

/// Fills `st` from the observation: the application, the Key Vault version, the consumers.
pub(crate) fn fill_status(
    st: &mut CredentialStatus,
    cred: &CredentialPolicy,
    observed: &Observed,
    now: DateTime<Utc>,
) {
    if let Some(app) = &observed.app {
        st.app_id = Some(app.app_id.to_string());
        st.display_name = Some(app.display_name.clone());
    }
    if let Err(why) = &observed.observation.app {
        st.problem = Some(why.clone());
    }
    match &observed.observation.vault {
        VaultState::Missing => {
            st.problem
                .get_or_insert_with(|| "the Key Vault secret does not exist".into());
        }
        VaultState::SoftDeleted { .. } => {
            st.problem.get_or_insert_with(|| {
                "the Key Vault secret is soft-deleted: recover or purge it".into()
            });
        }
        VaultState::Current(v) => fill_version(st, cred, observed, v, now),
    }
    st.consumers = cred
        .consumers
        .iter()
        .zip(&observed.observation.consumers)
        .map(|(c, o)| consumer_status(c.describe(), o, synced(observed, o)))
        .collect();
    st.consumers_in_sync = all_in_sync(&st.consumers, &observed.observation.consumers);
}

/// Every consumer holds the current value (or is write-only and recorded as written), and none
/// is blocked. Shared with the certificate credentials' status.
pub(crate) fn all_in_sync(consumers: &[ConsumerStatus], observed: &[ConsumerObservation]) -> bool {
    consumers.iter().all(|c| c.in_sync != Some(false))
        && !observed
            .iter()
            .any(|o| matches!(o.sync, ConsumerSync::Blocked { .. }))
}

/// What the current Key Vault version says: the password in use (and how that is known), its
/// expiry and renewal date, and the rotation's phase.
fn fill_version(
    st: &mut CredentialStatus,
    cred: &CredentialPolicy,
    observed: &Observed,
    v: &VaultVersion,
    now: DateTime<Utc>,
) {
    let (key, source) = match &v.identity {
        KeyIdentity::Tagged(k) => (Some(*k), "tags, confirmed by hint".to_string()),
        KeyIdentity::InferredFromHint(k) => (Some(*k), "hint".to_string()),
        KeyIdentity::Unknown { reason } => (None, format!("unknown: {reason}")),
    };
    st.key_id_in_use = key.map(|k| k.to_string());
    st.key_id_source = Some(source);
    if let (Some(k), Some(app)) = (key, &observed.app)
        && let Some(p) = app.passwords.iter().find(|p| p.key_id == k)
    {
        st.expires = p.end;
        st.days_left = p.end.map(|e| (e - now).num_days());
        st.next_due = p.end.map(|e| e - cred.renew_before);
    }
    if let Some(t) = &v.tags {
        st.phase = Some(tags::phase_name(t.phase).to_string());
        st.last_rotation = t.rotated_at;
    }
}

/// Whether the current version's tags record the consumer as holding it.
fn synced(observed: &Observed, o: &ConsumerObservation) -> bool {
    match &observed.observation.vault {
        VaultState::Current(v) => v
            .tags
            .as_ref()
            .is_some_and(|t| t.synced.iter().any(|s| s == &o.id)),
        VaultState::Missing | VaultState::SoftDeleted { .. } => false,
    }
}

/// One consumer's line: in sync, not, or unknown (a write-only target counts as in sync once
/// the tags record it as written). Shared with the certificate credentials' status.
pub(crate) fn consumer_status(
    description: String,
    o: &ConsumerObservation,
    synced: bool,
) -> ConsumerStatus {
    let (in_sync, detail) = match &o.sync {
        ConsumerSync::InSync => (Some(true), None),
        ConsumerSync::OutOfSync { detail } => (Some(false), Some(detail.clone())),
        ConsumerSync::Blocked { reason } => (None, Some(format!("blocked: {reason}"))),
        ConsumerSync::NotObservable {
            healthy: Some(false),
        } => (Some(false), Some("reports an error".to_string())),
        ConsumerSync::NotObservable { healthy } => (
            if synced { Some(true) } else { None },
            Some(format!(
                "write-only{}",
                if *healthy == Some(true) {
                    "; healthy"
                } else {
                    ""
                }
            )),
        ),
    };
    ConsumerStatus {
        description,
        in_sync,
        detail,
    }
}
