//! One example per rule of the certificate planner (see the module docs).

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::planner::{ConsumerObservation, ConsumerSync, Phase};
use crate::policy::{
    AppRef, ArmResource, CertificateConsumer, CertificateCredentialPolicy, Issuer, RsaKeySize,
    VaultCertificateRef,
};

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn days(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

pub(super) fn id(n: u8) -> Uuid {
    Uuid::from_u128(0x1000 + u128::from(n))
}

pub(super) fn tp(n: u8) -> Thumbprint {
    Thumbprint([n; 20])
}

fn site() -> ArmResource {
    ArmResource {
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        resource_group: "rg".into(),
        name: "func-int".into(),
        slot: None,
    }
}

pub(super) fn policy(consumers: Vec<CertificateConsumer>) -> CertificateCredentialPolicy {
    CertificateCredentialPolicy {
        name: "pa-cert".into(),
        application: AppRef::AppId(id(200)),
        tenant_id: None,
        certificate: VaultCertificateRef {
            vault: "kv-pa".into(),
            name: "pa-cert".into(),
        },
        issuer: Issuer::SelfSigned,
        subject: "CN=pa".into(),
        key_size: RsaKeySize::Rsa2048,
        exportable: true,
        validity_months: 12,
        renew_before: Duration::days(30),
        grace: Duration::days(7),
        consumers,
        replaces_secret: None,
    }
}

fn three() -> Vec<CertificateConsumer> {
    vec![
        CertificateConsumer::AppSettingKeyVaultRef {
            site: site(),
            setting: "ClientCertificate".into(),
        },
        CertificateConsumer::AppSettingThumbprint {
            site: site(),
            setting: "WEBSITE_LOAD_CERTIFICATES".into(),
        },
        CertificateConsumer::NotifyOnly {
            system: "EzSign".into(),
            instructions: "upload the .cer".into(),
        },
    ]
}

/// Version `n`: created on day `created`, valid for a year, thumbprint `tp(n)`.
pub(super) fn version(n: u8, created: i64) -> CertVersion {
    CertVersion {
        version: CertVersionId(format!("{n:032x}")),
        thumbprint: tp(n),
        created: Some(days(created)),
        not_before: Some(days(created)),
        expires: Some(days(created + 365)),
        enabled: true,
        origin: VersionOrigin::Requested,
        tags: None,
    }
}

pub(super) fn tags(key: u8, previous: Option<u8>, phase: Phase) -> CertRotationTags {
    CertRotationTags {
        key_id: id(key),
        previous_key_id: previous.map(id),
        phase,
        remove_after: None,
        synced: Vec::new(),
        conversion: None,
    }
}

/// Key `n` for version `n`'s thumbprint, valid like version `n` created on day `created`.
pub(super) fn key(n: u8, created: i64, ours: bool) -> KeyCredentialInfo {
    KeyCredentialInfo {
        key_id: id(n),
        thumbprint: Some(tp(n)),
        display_name: Some(if ours {
            "secret-rotator:pa-cert:2026-01-01".into()
        } else {
            "made by hand".into()
        }),
        start: Some(days(created)),
        end: Some(days(created + 365)),
    }
}

fn obs(
    policy: &CertificateCredentialPolicy,
    keys: Vec<KeyCredentialInfo>,
    versions: Vec<CertVersion>,
) -> CertObservation {
    CertObservation {
        app: Ok(CertAppState {
            object_id: id(201),
            app_id: id(200),
            keys,
        }),
        vault: CertVaultState::Present(CertificateState {
            versions,
            pending: None,
            exportable: true,
        }),
        current_accepted: None,
        consumers: policy
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

fn cert_state(o: &mut CertObservation) -> &mut CertificateState {
    match &mut o.vault {
        CertVaultState::Present(c) => c,
        _ => unreachable!("fixtures are present"),
    }
}

/// Version 1 current (its key 1 on the app), in `phase`, with previous key 9 (version 9).
fn settled(phase: Phase) -> (CertificateCredentialPolicy, CertObservation) {
    let p = policy(three());
    let mut v1 = version(1, 0);
    v1.tags = Some(tags(1, Some(9), phase));
    let v9 = version(9, -300);
    let o = obs(&p, vec![key(1, 0, true), key(9, -300, true)], vec![v9, v1]);
    (p, o)
}

fn tags_mut(o: &mut CertObservation) -> &mut CertRotationTags {
    let c = cert_state(o);
    c.versions
        .iter_mut()
        .find_map(|v| v.tags.as_mut())
        .expect("a tagged version")
}

#[test]
fn a_missing_certificate_is_created_from_the_policy() {
    let p = policy(three());
    let mut o = obs(&p, vec![], vec![]);
    o.vault = CertVaultState::Missing;
    let d = decide(&p, &o, t0());
    assert_eq!(
        d.steps,
        vec![CertStep::RequestVersion {
            reason: RenewReason::NotCreated
        }]
    );
}

#[test]
fn soft_deleted_and_unreadable_apps_block_with_the_fix() {
    let p = policy(three());
    let mut o = obs(&p, vec![], vec![]);
    o.vault = CertVaultState::SoftDeleted {
        scheduled_purge: None,
    };
    let d = decide(&p, &o, t0());
    assert!(d.steps.is_empty());
    assert!(
        d.blocked
            .unwrap()
            .contains("az keyvault certificate recover")
    );
    o.app = Err("403 from Graph".into());
    let d = decide(&p, &o, t0());
    assert!(d.blocked.unwrap().contains("403 from Graph"));
}

#[test]
fn a_pending_version_is_waited_for_and_a_failed_one_blocks() {
    let p = policy(three());
    let mut o = obs(&p, vec![], vec![]);
    cert_state(&mut o).pending = Some(PendingOperation::InProgress { requested: None });
    let d = decide(&p, &o, t0());
    assert!(d.steps.is_empty() && d.blocked.is_none());
    assert_eq!(d.next_due, Some(t0() + PENDING_POLL));
    cert_state(&mut o).pending = Some(PendingOperation::Failed {
        detail: "issuer DigiCert refused: domain not validated".into(),
    });
    let d = decide(&p, &o, t0());
    let why = d.blocked.expect("blocked");
    assert!(why.contains("domain not validated") && why.contains("pending delete"));
}

#[test]
fn a_version_people_already_put_on_the_app_is_adopted_as_current() {
    let p = policy(three());
    let mut theirs = version(1, 0);
    theirs.origin = VersionOrigin::Unknown;
    let o = obs(&p, vec![key(1, 0, false)], vec![theirs]);
    let d = decide(&p, &o, days(10));
    assert_eq!(
        d.steps,
        vec![CertStep::AdoptCurrent {
            version: version(1, 0).version,
            key_id: id(1)
        }]
    );
    // A version the rotator requested, whose key it put on the app, is proven instead: it
    // becomes current through `Prove` (phase Stored), so its consumers are all told.
    let o = obs(&p, vec![key(1, 0, true)], vec![version(1, 0)]);
    let d = decide(&p, &o, days(10));
    assert!(
        matches!(d.steps.first(), Some(CertStep::Prove { key_id, .. }) if *key_id == id(1)),
        "{d:?}"
    );
}

#[test]
fn a_first_version_goes_on_by_merge_write_keeping_every_other_key() {
    let p = policy(three());
    let mut stranger = key(7, 0, false);
    stranger.thumbprint = Some(tp(77));
    let o = obs(&p, vec![stranger], vec![version(1, 0)]);
    let d = decide(&p, &o, days(1));
    assert_eq!(
        d.steps,
        vec![CertStep::AddKey {
            version: version(1, 0).version,
            method: KeyWrite::MergeWrite { keep: vec![id(7)] }
        }]
    );
}

#[test]
fn an_auto_renewed_version_is_adopted_then_added_with_a_proof_then_proven() {
    let (p, mut o) = settled(Phase::Retired);
    o.app.as_mut().unwrap().keys.retain(|k| k.key_id != id(9));
    let mut v2 = version(2, 300);
    v2.origin = VersionOrigin::Unknown;
    cert_state(&mut o).versions.push(v2.clone());
    let d = decide(&p, &o, days(301));
    assert_eq!(
        d.steps,
        vec![CertStep::AdoptVersion {
            version: v2.version.clone()
        }]
    );
    cert_state(&mut o).versions[2].origin = VersionOrigin::Adopted;
    let d = decide(&p, &o, days(301));
    assert_eq!(
        d.steps,
        vec![CertStep::AddKey {
            version: v2.version.clone(),
            method: KeyWrite::WithProof {
                signer: version(1, 0).version
            }
        }]
    );
    o.app.as_mut().unwrap().keys.push(key(2, 300, true));
    let d = decide(&p, &o, days(301));
    assert_eq!(
        d.steps,
        vec![CertStep::Prove {
            version: v2.version,
            key_id: id(2),
            previous_key_id: Some(id(1))
        }]
    );
}

#[test]
fn a_new_version_waits_while_a_rotation_is_still_stored() {
    let (p, mut o) = settled(Phase::Stored);
    cert_state(&mut o).versions.push(version(2, 100));
    let d = decide(&p, &o, days(101));
    assert!(!d.steps.iter().any(|s| matches!(
        s,
        CertStep::AddKey { .. } | CertStep::Prove { .. } | CertStep::AdoptVersion { .. }
    )));
    assert!(d.explanation.iter().any(|e| e.contains("is ready")));
}

#[test]
fn stored_moves_each_consumer_then_completes() {
    let (p, mut o) = settled(Phase::Stored);
    o.consumers[0].sync = ConsumerSync::OutOfSync {
        detail: "old version".into(),
    };
    o.consumers[2].sync = ConsumerSync::NotObservable { healthy: None };
    let d = decide(&p, &o, days(1));
    assert_eq!(
        d.steps,
        vec![
            CertStep::UpdateConsumer {
                index: 0,
                consumer_id: p.consumers[0].id()
            },
            CertStep::Notify {
                index: 2,
                consumer_id: p.consumers[2].id()
            }
        ]
    );
    o.consumers[0].sync = ConsumerSync::InSync;
    tags_mut(&mut o).synced.push(p.consumers[2].id());
    let d = decide(&p, &o, days(1));
    assert_eq!(
        d.steps,
        vec![CertStep::CompletePropagation {
            remove_after: days(8)
        }]
    );
}

#[test]
fn a_pfx_consumer_is_held_up_when_key_vault_will_not_export_the_key() {
    let (p, mut o) = settled(Phase::Stored);
    o.consumers[0].sync = ConsumerSync::OutOfSync {
        detail: "old".into(),
    };
    cert_state(&mut o).exportable = false;
    let d = decide(&p, &o, days(1));
    assert!(d.steps.is_empty());
    assert!(d.held_up[0].contains("will not export the private key"));
    o.consumers[1].sync = ConsumerSync::OutOfSync {
        detail: "old".into(),
    };
    let d = decide(&p, &o, days(1));
    assert_eq!(d.steps.len(), 1, "the thumbprint consumer still moves");
}

#[test]
fn propagated_removes_the_previous_key_after_grace_then_retires() {
    let (p, mut o) = settled(Phase::Propagated);
    tags_mut(&mut o).remove_after = Some(days(20));
    let d = decide(&p, &o, days(10));
    assert!(d.steps.is_empty());
    assert_eq!(d.next_due, Some(days(20)));
    let d = decide(&p, &o, days(21));
    assert_eq!(
        d.steps,
        vec![
            CertStep::RemoveKey {
                key_id: id(9),
                reason: KeyRemoveReason::Superseded,
                method: KeyWrite::WithProof {
                    signer: version(1, 0).version
                }
            },
            CertStep::MarkRetired
        ]
    );
}

#[test]
fn a_previous_key_the_rotator_did_not_add_is_let_go_never_removed() {
    let (p, mut o) = settled(Phase::Propagated);
    o.app.as_mut().unwrap().keys[1] = key(9, -300, false);
    let d = decide(&p, &o, days(21));
    assert_eq!(d.steps, vec![CertStep::MarkRetired]);
}

#[test]
fn renewal_starts_inside_the_window_and_on_expiry() {
    let (p, mut o) = settled(Phase::Retired);
    o.app.as_mut().unwrap().keys.truncate(1);
    let d = decide(&p, &o, days(100));
    assert!(d.steps.is_empty());
    assert_eq!(d.next_due, Some(days(335)));
    let d = decide(&p, &o, days(336));
    assert_eq!(
        d.steps,
        vec![CertStep::RequestVersion {
            reason: RenewReason::ExpiringSoon { expires: days(365) }
        }]
    );
    let d = decide(&p, &o, days(400));
    assert_eq!(
        d.steps,
        vec![CertStep::RequestVersion {
            reason: RenewReason::Expired { expired: days(365) }
        }]
    );
}

#[test]
fn graphs_refusal_of_a_key_blocks_with_its_reason() {
    let (p, mut o) = settled(Phase::Retired);
    cert_state(&mut o).versions.push(version(2, 340));
    o.add_refused = Some(AddRefusal {
        version: version(2, 340).version,
        kind: AddRefusalKind::KeyCredentialLimit,
        detail: "too many keys".into(),
    });
    let d = decide(&p, &o, days(341));
    assert!(d.steps.is_empty());
    assert!(d.blocked.unwrap().contains("key-credential limit"));
}

#[test]
fn orphans_and_expired_keys_of_the_rotator_go_others_stay() {
    let (p, mut o) = settled(Phase::Retired);
    let keys = &mut o.app.as_mut().unwrap().keys;
    keys.truncate(1);
    keys.push(key(5, 0, true)); // no version has tp(5): an orphan
    let mut old = key(6, -400, false); // expired, but not ours
    old.thumbprint = Some(tp(66));
    keys.push(old);
    let d = decide(&p, &o, days(10));
    assert_eq!(
        d.steps,
        vec![CertStep::RemoveKey {
            key_id: id(5),
            reason: KeyRemoveReason::Orphan,
            method: KeyWrite::WithProof {
                signer: version(1, 0).version
            }
        }]
    );
}

#[test]
fn the_only_valid_key_is_never_removed() {
    let (p, mut o) = settled(Phase::Propagated);
    tags_mut(&mut o).remove_after = Some(days(20));
    // The current key has been cut short: the previous one is the only valid key.
    o.app.as_mut().unwrap().keys[0].end = Some(days(15));
    let d = decide(&p, &o, days(21));
    assert!(
        !d.steps
            .iter()
            .any(|s| matches!(s, CertStep::RemoveKey { .. }))
    );
}

#[test]
fn a_current_key_removed_by_someone_is_put_back() {
    let (p, mut o) = settled(Phase::Retired);
    o.app.as_mut().unwrap().keys.remove(0);
    let d = decide(&p, &o, days(10));
    assert_eq!(
        d.steps,
        vec![CertStep::AddKey {
            version: version(1, 0).version,
            method: KeyWrite::MergeWrite { keep: vec![id(9)] }
        }]
    );
}

fn converting() -> (CertificateCredentialPolicy, CertObservation) {
    let (mut p, mut o) = settled(Phase::Retired);
    p.replaces_secret = Some("pa".into());
    o.app.as_mut().unwrap().keys.truncate(1);
    o.conversion = Some(ConversionObservation {
        secret_consumers: vec![SecretConsumerMove::Moved, SecretConsumerMove::Moved],
        secret_passwords: vec![id(50), id(51)],
    });
    (p, o)
}

#[test]
fn a_converted_secret_goes_only_after_every_consumer_moved_and_grace() {
    let (p, mut o) = converting();
    o.conversion.as_mut().unwrap().secret_consumers[1] = SecretConsumerMove::StillOnSecret {
        detail: "ClientSecret on func-int".into(),
    };
    let d = decide(&p, &o, days(10));
    assert!(d.steps.is_empty());
    assert!(d.explanation.iter().any(|e| e.contains("still holds it")));
    o.conversion.as_mut().unwrap().secret_consumers[1] = SecretConsumerMove::Moved;
    let d = decide(&p, &o, days(10));
    assert_eq!(
        d.steps,
        vec![CertStep::ReleaseSecret {
            remove_after: days(17)
        }]
    );
    tags_mut(&mut o).conversion = Some(ConversionPhase::SecretReleased {
        remove_after: days(17),
    });
    let d = decide(&p, &o, days(12));
    assert!(d.steps.is_empty());
    assert_eq!(d.next_due, Some(days(17)));
    let d = decide(&p, &o, days(18));
    let remove = |k| CertStep::RemoveClientSecret {
        credential: "pa".into(),
        key_id: id(k),
    };
    assert_eq!(
        d.steps,
        vec![remove(50), remove(51), CertStep::MarkConverted]
    );
}

#[test]
fn a_consumer_back_on_the_secret_stops_its_removal() {
    let (p, mut o) = converting();
    tags_mut(&mut o).conversion = Some(ConversionPhase::SecretReleased {
        remove_after: days(5),
    });
    o.conversion.as_mut().unwrap().secret_consumers[0] = SecretConsumerMove::Unknown {
        reason: "write-only".into(),
    };
    let d = decide(&p, &o, days(18));
    assert!(d.steps.is_empty());
}

#[test]
fn a_secret_is_not_removed_while_the_certificate_is_not_on_every_consumer() {
    let (p, mut o) = converting();
    tags_mut(&mut o).phase = Phase::Stored;
    tags_mut(&mut o).conversion = Some(ConversionPhase::SecretReleased {
        remove_after: days(5),
    });
    let d = decide(&p, &o, days(18));
    assert!(
        !d.steps
            .iter()
            .any(|s| matches!(s, CertStep::RemoveClientSecret { .. }))
    );
}

#[test]
fn azures_words_reach_the_message_without_line_breaks_and_clipped() {
    let p = policy(three());
    let mut o = obs(&p, vec![], vec![]);
    let forged = format!("refused\nINFO rotation done{}", "x".repeat(500));
    cert_state(&mut o).pending = Some(PendingOperation::Failed { detail: forged });
    let why = decide(&p, &o, t0()).blocked.expect("blocked");
    assert!(!why.contains('\n'));
    assert!(why.contains("refusedINFO rotation done") && why.contains('…'));
    assert!(why.len() < 600);
}
