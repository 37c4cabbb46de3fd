//! `Status` for certificate credentials: [`certificate_status`], a pure function of (policy,
//! [`CertObservation`], [`CertDecision`], last recorded outcome, now) giving the
//! [`CertificateStatus`] the `Status` answer, the status page and the CLI show.
//!
//! Metadata only: the observation holds thumbprints, key ids and dates, and nothing here reads
//! anything else, so no key, PFX or secret value can reach the answer. Text from Azure (key
//! display names, Key Vault's pending-operation error, the planner's sentences quoting Graph) is
//! carried as text; the page escapes it.

use chrono::{DateTime, Duration, Utc};

use crate::engine::inventory::days_left;
use crate::engine::report::{
    CertificateStatus, ConversionState, ConversionStatus, CredentialOutcome, KeyCredentialStatus,
    KeyRole, PendingState, PendingStatus, SecretConsumerStatus,
};
use crate::engine::usecase::status::{all_in_sync, consumer_status};
use crate::planner::ConsumerObservation;
use crate::planner::PasswordMarker;
use crate::planner::certificate::{
    CertAppState, CertDecision, CertObservation, CertRotationTags, CertVaultState, CertVersion,
    ConversionObservation, ConversionPhase, PendingOperation, SecretConsumerMove, describe_step,
};
use crate::policy::{CertificateCredentialPolicy, CredentialPolicy};

/// A key credential expiring within this many days counts as expiring (the page's "renew
/// soon" threshold too).
pub const EXPIRING_DAYS: i64 = 30;

/// A certificate credential's status before anything is known of it (the observation failed:
/// the caller sets `problem`).
pub fn blank_certificate_status(
    policy: &CertificateCredentialPolicy,
    last_outcome: Option<CredentialOutcome>,
) -> CertificateStatus {
    CertificateStatus {
        name: policy.name.clone(),
        app_id: None,
        object_id: None,
        vault: policy.certificate.vault.clone(),
        certificate: policy.certificate.name.clone(),
        current_version: None,
        thumbprint: None,
        key_id_in_use: None,
        not_before: None,
        expires: None,
        days_left: None,
        phase: None,
        previous_key_id: None,
        remove_after: None,
        keys: Vec::new(),
        keys_by_rotator: 0,
        keys_by_others: 0,
        keys_expiring: 0,
        consumers_in_sync: false,
        consumers: Vec::new(),
        pending: None,
        next_step: None,
        blocked: None,
        held_up: Vec::new(),
        next_due: None,
        conversion: None,
        problem: None,
        last_outcome,
    }
}

/// One certificate credential's status. `secret` is the policy entry of the client secret the
/// certificate replaces (its consumers' descriptions), when converting.
pub fn certificate_status(
    policy: &CertificateCredentialPolicy,
    secret: Option<&CredentialPolicy>,
    obs: &CertObservation,
    decision: &CertDecision,
    last_outcome: Option<CredentialOutcome>,
    now: DateTime<Utc>,
) -> CertificateStatus {
    let mut st = blank_certificate_status(policy, last_outcome);
    let current = match &obs.vault {
        CertVaultState::Present(c) => {
            st.pending = c.pending.as_ref().map(pending_status);
            c.current()
        }
        CertVaultState::Missing | CertVaultState::SoftDeleted { .. } => None,
    };
    if let Some((v, t)) = current {
        fill_current(&mut st, v, t, now);
    }
    match &obs.app {
        Ok(app) => fill_app(&mut st, policy, app, current, now),
        Err(why) => st.problem = Some(why.clone()),
    }
    // A write-only consumer counts as holding the version once its tags record it as written.
    let synced = |o: &ConsumerObservation| current.is_some_and(|(_, t)| t.synced.contains(&o.id));
    st.consumers = policy
        .consumers
        .iter()
        .zip(&obs.consumers)
        .map(|(c, o)| consumer_status(c.describe(), o, synced(o)))
        .collect();
    st.consumers_in_sync = all_in_sync(&st.consumers, &obs.consumers);
    st.next_step = decision.steps.first().map(describe_step);
    st.blocked = decision.blocked.clone();
    st.held_up = decision.held_up.clone();
    st.next_due = decision.next_due;
    st.conversion = conversion_status(policy, secret, obs.conversion.as_ref(), current);
    st
}

/// What the current version and its tags say: version, thumbprint, dates, phase, previous key.
fn fill_current(
    st: &mut CertificateStatus,
    v: &CertVersion,
    t: &CertRotationTags,
    now: DateTime<Utc>,
) {
    st.current_version = Some(v.version.to_string());
    st.thumbprint = Some(v.thumbprint.to_string());
    st.not_before = v.not_before;
    st.expires = v.expires;
    st.days_left = v.expires.map(|e| days_left(e, now));
    st.phase = Some(crate::engine::tags::phase_name(t.phase).to_string());
    st.previous_key_id = t.previous_key_id.map(|k| k.to_string());
    st.remove_after = t.remove_after;
}

/// The application: its ids, the key in use, and every key with its role.
fn fill_app(
    st: &mut CertificateStatus,
    policy: &CertificateCredentialPolicy,
    app: &CertAppState,
    current: Option<(&CertVersion, &CertRotationTags)>,
    now: DateTime<Utc>,
) {
    st.app_id = Some(app.app_id.to_string());
    st.object_id = Some(app.object_id.to_string());
    let in_use = current.and_then(|(v, t)| app.key_of_version(v, Some(t.key_id)));
    st.key_id_in_use = in_use.map(|k| k.key_id.to_string());
    let previous = current.and_then(|(_, t)| t.previous_key_id);
    let soon = now.checked_add_signed(Duration::days(EXPIRING_DAYS));
    st.keys = app
        .keys
        .iter()
        .map(|k| {
            let role = if in_use.is_some_and(|u| u.key_id == k.key_id) {
                KeyRole::InUse
            } else if previous == Some(k.key_id) {
                KeyRole::Previous
            } else if k
                .display_name
                .as_deref()
                .is_some_and(|n| PasswordMarker::is_for(n, &policy.name))
            {
                KeyRole::Rotator
            } else {
                KeyRole::Other
            };
            KeyCredentialStatus {
                key_id: k.key_id.to_string(),
                thumbprint: k.thumbprint.map(|t| t.to_string()),
                display_name: k.display_name.clone(),
                role,
                start: k.start,
                end: k.end,
                days_left: k.end.map(|e| days_left(e, now)),
                expiring: matches!((k.end, soon), (Some(e), Some(s)) if e <= s),
            }
        })
        .collect();
    st.keys_by_others = st.keys.iter().filter(|k| k.role == KeyRole::Other).count();
    st.keys_by_rotator = st.keys.len() - st.keys_by_others;
    st.keys_expiring = st.keys.iter().filter(|k| k.expiring).count();
}

fn pending_status(p: &PendingOperation) -> PendingStatus {
    match p {
        PendingOperation::InProgress { requested } => PendingStatus {
            state: PendingState::InProgress,
            requested: *requested,
            detail: None,
        },
        PendingOperation::Failed { detail } => PendingStatus {
            state: PendingState::Failed,
            requested: None,
            detail: Some(detail.clone()),
        },
    }
}

/// The conversion's progress: where the current version's tags put it, and which of the
/// secret's consumers are still on the secret.
fn conversion_status(
    policy: &CertificateCredentialPolicy,
    secret: Option<&CredentialPolicy>,
    seen: Option<&ConversionObservation>,
    current: Option<(&CertVersion, &CertRotationTags)>,
) -> Option<ConversionStatus> {
    let name = policy.replaces_secret.clone()?;
    let (state, remove_after) = match current.and_then(|(_, t)| t.conversion) {
        Some(ConversionPhase::SecretReleased { remove_after }) => {
            (ConversionState::SecretReleased, Some(remove_after))
        }
        Some(ConversionPhase::Converted) => (ConversionState::Converted, None),
        None => (ConversionState::Waiting, None),
    };
    let describe = |i: usize| {
        secret
            .and_then(|s| s.consumers.get(i))
            .map(|c| c.describe())
            .unwrap_or_else(|| format!("consumer #{} of {name}", i + 1))
    };
    let consumers: Vec<SecretConsumerStatus> = seen
        .map(|s| s.secret_consumers.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (moved, detail) = match m {
                SecretConsumerMove::Moved => (Some(true), None),
                SecretConsumerMove::StillOnSecret { detail } => (Some(false), Some(detail.clone())),
                SecretConsumerMove::Unknown { reason } => (None, Some(reason.clone())),
            };
            SecretConsumerStatus {
                description: describe(i),
                moved,
                detail,
            }
        })
        .collect();
    Some(ConversionStatus {
        secret: name,
        state,
        remove_after,
        secret_passwords: seen
            .map(|s| s.secret_passwords.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default(),
        still_on_secret: consumers.iter().filter(|c| c.moved != Some(true)).count(),
        consumers,
    })
}

#[cfg(test)]
#[path = "certificate_status_tests.rs"]
mod tests;

#[cfg(test)]
pub(crate) use fixture::example;

#[cfg(test)]
mod fixture {
    use crate::engine::report::*;
    use chrono::{Duration, Utc};

    /// A key's display name someone chose to attack the page.
    pub(crate) const HOSTILE: &str = r#"<script>alert("x")</script><img src=x>"#;

    /// A certificate credential's status with Azure's text hostile everywhere it can be:
    /// blocked by a failed Key Vault operation, one consumer out of sync, converting.
    pub(crate) fn example(name: &str) -> CertificateStatus {
        let now = Utc::now();
        CertificateStatus {
            name: name.into(),
            app_id: Some("7412f649-8e14-471f-bfc1-733b36a42705".into()),
            object_id: None,
            vault: "kv-pa".into(),
            certificate: "pa-cert".into(),
            current_version: Some("0123456789abcdef0123456789abcdef".into()),
            thumbprint: Some("AB".repeat(20)),
            key_id_in_use: Some("k1".into()),
            not_before: None,
            expires: Some(now + Duration::days(90)),
            days_left: Some(90),
            phase: Some("stored".into()),
            previous_key_id: None,
            remove_after: None,
            keys: vec![KeyCredentialStatus {
                key_id: "k9".into(),
                thumbprint: None,
                display_name: Some(HOSTILE.into()),
                role: KeyRole::Other,
                start: None,
                end: Some(now + Duration::days(5)),
                days_left: Some(5),
                expiring: true,
            }],
            keys_by_rotator: 1,
            keys_by_others: 1,
            keys_expiring: 1,
            consumers_in_sync: false,
            consumers: vec![ConsumerStatus {
                description: "thumbprint setting WEBSITE_LOAD_CERTIFICATES".into(),
                in_sync: Some(false),
                detail: Some("holds <old>".into()),
            }],
            pending: Some(PendingStatus {
                state: PendingState::Failed,
                requested: None,
                detail: Some("CA said <iframe src=//evil>".into()),
            }),
            next_step: None,
            blocked: Some("Key Vault's request failed (<b>DigiCert</b>)".into()),
            held_up: vec!["site <gone>".into()],
            next_due: None,
            conversion: Some(ConversionStatus {
                secret: "pa".into(),
                state: ConversionState::Waiting,
                remove_after: None,
                secret_passwords: vec![],
                consumers: vec![SecretConsumerStatus {
                    description: "Key Vault reference ClientSecret".into(),
                    moved: Some(false),
                    detail: None,
                }],
                still_on_secret: 1,
            }),
            problem: None,
            last_outcome: None,
        }
    }
}
