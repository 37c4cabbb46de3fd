//! The pure certificate status: one test per phase, pending, blocked, the conversion, the keys'
//! roles and counts. Decisions come from the real planner, so the status shows what a run does.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::planner::certificate::{
    CertVersionId, CertificateState, KeyCredentialInfo, Thumbprint, VersionOrigin, decide,
};
use crate::planner::{ConsumerObservation, ConsumerSync, Phase};
use crate::policy::Policy;

const APP: &str = "7412f649-8e14-471f-bfc1-733b36a42705";
const SITE: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/func-int";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn days(n: i64) -> DateTime<Utc> {
    now() + Duration::days(n)
}

fn id(n: u8) -> Uuid {
    Uuid::from_u128(0x5000 + u128::from(n))
}

/// A secret `pa` (one consumer) and a certificate `pa-cert` with two consumers, converting `pa`
/// when `converting`.
fn policy(converting: bool) -> Policy {
    let mut cert = json!({
        "type": "certificate", "name": "pa-cert",
        "application": { "appId": APP },
        "certificate": { "vault": "kv-pa", "name": "pa-cert" },
        "issuer": "Self", "subject": "CN=pa", "keySize": 2048,
        "validityInMonths": 12, "renewBeforeDays": 30, "graceDays": 7,
        "consumers": [
            { "type": "appSettingKeyVaultReference", "site": SITE, "setting": "ClientCertificate" },
            { "type": "appSettingThumbprint", "site": SITE, "setting": "WEBSITE_LOAD_CERTIFICATES" }
        ]
    });
    if converting {
        cert["replacesSecret"] = json!("pa");
    }
    let file = json!({ "credentials": [
        { "name": "pa", "application": { "appId": APP },
          "keyVault": { "vault": "kv-pa", "secret": "appSecret" },
          "consumers": [ { "type": "appSettingKeyVaultReference", "site": SITE, "setting": "ClientSecret" } ] },
        cert
    ]});
    crate::policy::parse("policy.json", &file.to_string()).expect("valid policy")
}

fn key(n: u8, name: Option<&str>, end: DateTime<Utc>) -> KeyCredentialInfo {
    KeyCredentialInfo {
        key_id: id(n),
        thumbprint: Some(Thumbprint([n; 20])),
        display_name: name.map(str::to_string),
        start: Some(days(-400)),
        end: Some(end),
    }
}

/// Version `n` (thumbprint `[n; 20]`), created `created` days from now, valid a year from then.
fn version(n: u8, created: i64, tags: Option<CertRotationTags>) -> CertVersion {
    CertVersion {
        version: CertVersionId(format!("{n:032x}")),
        thumbprint: Thumbprint([n; 20]),
        created: Some(days(created)),
        not_before: Some(days(created)),
        expires: Some(days(created + 365)),
        enabled: true,
        origin: VersionOrigin::Requested,
        tags,
    }
}

fn tags(phase: Phase, synced: Vec<crate::policy::ConsumerId>) -> CertRotationTags {
    CertRotationTags {
        key_id: id(2),
        previous_key_id: Some(id(1)),
        phase,
        remove_after: (phase == Phase::Propagated).then(|| days(7)),
        synced,
        conversion: None,
    }
}

/// The application holds keys 1 (previous, rotator's), 2 (current, rotator's) and 9 (someone
/// else's, expiring in 10 days); the vault version 1 (old) and 2 (current, tagged `t`).
fn observation(p: &CertificateCredentialPolicy, t: CertRotationTags) -> CertObservation {
    let marker = "secret-rotator:pa-cert:2026-01-01";
    CertObservation {
        app: Ok(CertAppState {
            object_id: id(100),
            app_id: APP.parse().unwrap(),
            keys: vec![
                key(1, Some(marker), days(200)),
                key(2, Some(marker), days(355)),
                key(9, Some("<img src=x onerror=alert(1)>"), days(10)),
            ],
        }),
        vault: CertVaultState::Present(CertificateState {
            versions: vec![version(1, -200, None), version(2, -10, Some(t))],
            pending: None,
            exportable: true,
        }),
        current_accepted: Some(true),
        consumers: p
            .consumers
            .iter()
            .map(|c| ConsumerObservation {
                id: c.id(),
                sync: ConsumerSync::InSync,
            })
            .collect(),
        add_refused: None,
        conversion: None,
    }
}

fn status_of(p: &Policy, obs: &CertObservation) -> CertificateStatus {
    let cert = &p.certificates[0];
    let d = decide(cert, obs, now());
    certificate_status(cert, p.credentials.first(), obs, &d, None, now())
}

#[test]
fn stored_shows_the_version_thumbprint_keys_and_the_consumer_left_to_move() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut obs = observation(cert, tags(Phase::Stored, vec![]));
    obs.consumers[1].sync = ConsumerSync::OutOfSync {
        detail: "holds thumbprint 0101…".into(),
    };
    let st = status_of(&p, &obs);
    assert_eq!(st.phase.as_deref(), Some("stored"));
    assert_eq!(st.current_version.as_deref(), Some(&*format!("{:032x}", 2)));
    assert_eq!(st.thumbprint.as_deref(), Some(&*"02".repeat(20)));
    assert_eq!(st.key_id_in_use, Some(id(2).to_string()));
    assert_eq!(st.previous_key_id, Some(id(1).to_string()));
    assert_eq!(st.expires, Some(days(355)));
    assert_eq!(st.days_left, Some(355));
    let roles: Vec<KeyRole> = st.keys.iter().map(|k| k.role).collect();
    assert_eq!(roles, [KeyRole::Previous, KeyRole::InUse, KeyRole::Other]);
    assert_eq!((st.keys_by_rotator, st.keys_by_others), (2, 1));
    assert_eq!(st.keys_expiring, 1, "key 9 ends in 10 days");
    assert!(!st.consumers_in_sync);
    assert_eq!(st.consumers[1].in_sync, Some(false));
    assert!(
        st.consumers[1]
            .description
            .contains("WEBSITE_LOAD_CERTIFICATES")
    );
    let next = st.next_step.expect("a step");
    assert!(next.contains("move consumer #2"), "{next}");
    assert!(st.blocked.is_none() && st.next_due.is_none());
    assert!(st.conversion.is_none());
}

#[test]
fn propagated_shows_when_the_previous_key_goes() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let synced = cert.consumers.iter().map(|c| c.id()).collect();
    let st = status_of(&p, &observation(cert, tags(Phase::Propagated, synced)));
    assert_eq!(st.phase.as_deref(), Some("propagated"));
    assert_eq!(st.remove_after, Some(days(7)));
    assert!(st.consumers_in_sync);
    assert!(
        st.next_step.is_none(),
        "waiting for grace: {:?}",
        st.next_step
    );
    assert_eq!(st.next_due, Some(days(7)));
}

#[test]
fn retired_is_settled_until_renewal() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut t = tags(
        Phase::Retired,
        cert.consumers.iter().map(|c| c.id()).collect(),
    );
    t.previous_key_id = None;
    let mut obs = observation(cert, t);
    if let Ok(app) = &mut obs.app {
        app.keys.remove(0);
    }
    let st = status_of(&p, &obs);
    assert_eq!(st.phase.as_deref(), Some("retired"));
    assert_eq!(st.keys.len(), 2);
    assert!(st.next_step.is_none());
    // Renewal is due 30 days before the version's expiry (355 days away).
    assert_eq!(st.next_due, Some(days(325)));
}

#[test]
fn a_pending_operation_is_shown_and_a_failed_one_blocks_with_key_vaults_words() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut obs = observation(cert, tags(Phase::Retired, vec![]));
    let CertVaultState::Present(c) = &mut obs.vault else {
        unreachable!()
    };
    c.pending = Some(PendingOperation::InProgress {
        requested: Some(days(-1)),
    });
    let st = status_of(&p, &obs);
    let pending = st.pending.expect("pending");
    assert_eq!(pending.state, PendingState::InProgress);
    assert_eq!(pending.requested, Some(days(-1)));

    // A failed operation blocks once a new version is needed: the current one expires within
    // the renewal window.
    let CertVaultState::Present(c) = &mut obs.vault else {
        unreachable!()
    };
    c.versions[1].expires = Some(days(20));
    c.pending = Some(PendingOperation::Failed {
        detail: "Issuer DigiCert refused: <b>policy</b>".into(),
    });
    let st = status_of(&p, &obs);
    assert_eq!(
        st.pending.as_ref().map(|p| p.state),
        Some(PendingState::Failed)
    );
    let blocked = st.blocked.expect("a failed operation blocks");
    assert!(blocked.contains("DigiCert refused"), "{blocked}");
    assert!(st.next_step.is_none() && st.next_due.is_none());
}

#[test]
fn soft_deleted_certificate_blocks_and_nothing_is_current() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut obs = observation(cert, tags(Phase::Retired, vec![]));
    obs.vault = CertVaultState::SoftDeleted {
        scheduled_purge: Some(days(80)),
    };
    let st = status_of(&p, &obs);
    assert!(st.current_version.is_none() && st.key_id_in_use.is_none());
    assert!(st.blocked.expect("blocked").contains("soft-deleted"));
    assert_eq!(st.keys.len(), 3, "the application's keys are still listed");
}

#[test]
fn an_unreadable_application_is_a_problem_not_a_panic() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut obs = observation(cert, tags(Phase::Retired, vec![]));
    obs.app = Err("Graph answered 403 Authorization_RequestDenied".into());
    let st = status_of(&p, &obs);
    assert!(st.problem.expect("problem").contains("403"));
    assert!(st.keys.is_empty() && st.app_id.is_none());
    assert!(st.blocked.is_some());
    // The vault side is still shown.
    assert_eq!(st.phase.as_deref(), Some("retired"));
}

#[test]
fn a_missing_certificate_says_it_will_be_created() {
    let p = policy(false);
    let cert = &p.certificates[0];
    let mut obs = observation(cert, tags(Phase::Retired, vec![]));
    obs.vault = CertVaultState::Missing;
    let st = status_of(&p, &obs);
    assert!(st.current_version.is_none() && st.problem.is_none());
    assert!(
        st.next_step
            .expect("step")
            .contains("request a new certificate version")
    );
}

fn converting(moves: Vec<SecretConsumerMove>, phase: Option<ConversionPhase>) -> CertificateStatus {
    let p = policy(true);
    let cert = &p.certificates[0];
    let mut t = tags(
        Phase::Retired,
        cert.consumers.iter().map(|c| c.id()).collect(),
    );
    t.conversion = phase;
    t.previous_key_id = None;
    let mut obs = observation(cert, t);
    if let Ok(app) = &mut obs.app {
        app.keys.remove(0);
    }
    obs.conversion = Some(ConversionObservation {
        secret_consumers: moves,
        secret_passwords: if phase == Some(ConversionPhase::Converted) {
            vec![]
        } else {
            vec![id(50)]
        },
    });
    status_of(&p, &obs)
}

#[test]
fn conversion_names_the_secret_and_the_consumers_still_on_it() {
    let st = converting(
        vec![SecretConsumerMove::StillOnSecret {
            detail: "ClientSecret still references appSecret".into(),
        }],
        None,
    );
    let c = st.conversion.expect("conversion");
    assert_eq!(c.secret, "pa");
    assert_eq!(c.state, ConversionState::Waiting);
    assert_eq!(c.still_on_secret, 1);
    assert_eq!(c.secret_passwords, [id(50).to_string()]);
    assert_eq!(c.consumers[0].moved, Some(false));
    assert!(c.consumers[0].description.contains("ClientSecret"));

    let st = converting(vec![SecretConsumerMove::Moved], None);
    let c = st.conversion.expect("conversion");
    assert_eq!(c.still_on_secret, 0);
    let next = st.next_step.expect("release");
    assert!(
        next.contains("release the replaced client secret"),
        "{next}"
    );
}

#[test]
fn conversion_released_then_converted() {
    let st = converting(
        vec![SecretConsumerMove::Moved],
        Some(ConversionPhase::SecretReleased {
            remove_after: days(3),
        }),
    );
    let c = st.conversion.expect("conversion");
    assert_eq!(c.state, ConversionState::SecretReleased);
    assert_eq!(c.remove_after, Some(days(3)));

    let st = converting(
        vec![SecretConsumerMove::Unknown {
            reason: "site gone".into(),
        }],
        Some(ConversionPhase::Converted),
    );
    let c = st.conversion.expect("conversion");
    assert_eq!(c.state, ConversionState::Converted);
    assert!(c.secret_passwords.is_empty());
    assert_eq!(c.consumers[0].moved, None);
}

#[test]
fn serialises_camel_case_metadata_only() {
    let p = policy(true);
    let cert = &p.certificates[0];
    let st = status_of(&p, &observation(cert, tags(Phase::Stored, vec![])));
    let v = serde_json::to_value(&st).unwrap();
    for field in [
        "currentVersion",
        "thumbprint",
        "keyIdInUse",
        "keysByRotator",
        "keysByOthers",
        "keysExpiring",
        "consumersInSync",
        "heldUp",
        "nextDue",
        "conversion",
    ] {
        assert!(v.get(field).is_some(), "no {field} in {v}");
    }
    assert_eq!(v["keys"][1]["role"], "inUse");
    assert_eq!(v["conversion"]["state"], "waiting");
}
