//! Example-based planner tests: one per field-runbook situation, then one per rule.

use super::*;
use crate::policy::{AppRef, ArmResource, Consumer, ConsumerId, CredentialPolicy, VaultSecretRef};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap()
}

fn key(n: u128) -> Uuid {
    Uuid::from_u128(0x3f2a_0000_0000_4000_8000_0000_0000_0000 + n)
}

fn res(name: &str) -> ArmResource {
    ArmResource {
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        resource_group: "rg".into(),
        name: name.into(),
        slot: None,
    }
}

/// Provision Assist's consumers (runbook 001) plus EzSign's manual step (runbook 000).
fn consumers() -> Vec<Consumer> {
    vec![
        Consumer::AppSettingKeyVaultRef {
            site: res("func-int"),
            setting: "TeamsClientSecret".into(),
        },
        Consumer::ApiConnection {
            connection: res("provisionassist-kv"),
            parameter: "token:clientSecret".into(),
        },
        Consumer::AutomationVariable {
            account: res("provisionassist-auto"),
            variable: "appSecret".into(),
        },
        Consumer::NotifyOnly {
            system: "EzSign".into(),
            instructions: "Run ezsign-manage.sh, choose Set Passwords, enter the new value".into(),
        },
    ]
}

fn policy(consumers: Vec<Consumer>) -> CredentialPolicy {
    CredentialPolicy {
        name: "provision-assist".into(),
        application: AppRef::AppId(Uuid::from_u128(7)),
        tenant_id: None,
        key_vault: VaultSecretRef {
            vault: "kv-pa".into(),
            secret: "appSecret".into(),
        },
        renew_before: Duration::days(30),
        lifetime: Duration::days(180),
        grace: Duration::days(7),
        remove_unmanaged_expired: false,
        consumers,
    }
}

fn pw(k: Uuid, name: Option<&str>, start: DateTime<Utc>, end: DateTime<Utc>) -> PasswordInfo {
    PasswordInfo {
        key_id: k,
        display_name: name.map(Into::into),
        hint: Some("abc".into()),
        start: Some(start),
        end: Some(end),
    }
}

fn ours(k: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> PasswordInfo {
    pw(
        k,
        Some("secret-rotator:provision-assist:2026-01-01"),
        start,
        end,
    )
}

fn app(passwords: Vec<PasswordInfo>) -> Result<AppState, String> {
    Ok(AppState {
        object_id: Uuid::from_u128(8),
        app_id: Uuid::from_u128(7),
        display_name: "Provision Assist".into(),
        passwords,
    })
}

fn version(
    identity: KeyIdentity,
    tags: Option<RotationTags>,
    created: DateTime<Utc>,
) -> VaultState {
    VaultState::Current(VaultVersion {
        version: "7028171e6c464283957648d8bf095140".into(),
        created: Some(created),
        identity,
        tags,
    })
}

fn tags(k: Uuid, previous: Option<Uuid>, phase: Phase, synced: Vec<ConsumerId>) -> RotationTags {
    RotationTags {
        key_id: k,
        previous_key_id: previous,
        phase,
        rotated_at: Some(now() - Duration::days(1)),
        remove_after: None,
        synced,
    }
}

fn id(s: &str) -> ConsumerId {
    ConsumerId::parse(s).expect("a consumer id")
}

fn sync_all(p: &CredentialPolicy, sync: ConsumerSync) -> Vec<ConsumerObservation> {
    p.consumers
        .iter()
        .map(|c| ConsumerObservation {
            id: c.id(),
            sync: sync.clone(),
        })
        .collect()
}

fn obs(p: &CredentialPolicy, passwords: Vec<PasswordInfo>, vault: VaultState) -> Observation {
    Observation {
        app: app(passwords),
        vault,
        current_value_accepted: Some(true),
        consumers: sync_all(p, ConsumerSync::InSync),
        versions: None,
    }
}

fn explanation(d: &Decision) -> String {
    d.explanation.join("\n")
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

// ---- The seed runbooks' situations ----

/// Runbooks 000 and 003: AADSTS7000222, the secret has expired; found with no rotator tags.
#[test]
fn expired_secret_found_without_tags_is_adopted_and_rotated() {
    let p = policy(vec![]);
    let a = key(1);
    let o = obs(
        &p,
        vec![pw(a, Some("ezsign2"), now() - days(365), now() - days(2))],
        version(KeyIdentity::InferredFromHint(a), None, now() - days(365)),
    );
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![
            Step::Adopt { key_id: a },
            Step::Rotate {
                reason: RotateReason::Expired {
                    expired: now() - days(2)
                },
                previous_key_id: Some(a),
                end: now() + days(180),
            }
        ]
    );
    assert_eq!(d.blocked, None);
    let text = explanation(&d);
    assert!(
        text.contains("appSecret's password 3f2a… ('ezsign2') expired on 2026-11-20")
            || text.contains("appSecret's password 3f2a… expired on 2026-11-20"),
        "{text}"
    );
    assert!(text.contains("AADSTS7000222"), "{text}");
}

/// Runbooks 002 and 004: several passwords, only one of them is in Key Vault (by hint).
#[test]
fn several_passwords_one_in_use_by_hint() {
    let mut p = policy(vec![]);
    let (old1, old2, used) = (key(1), key(2), key(3));
    let passwords = vec![
        pw(old1, Some("first"), now() - days(800), now() - days(70)),
        pw(old2, None, now() - days(400), now() - days(5)),
        pw(
            used,
            Some("portal secret"),
            now() - days(100),
            now() + days(265),
        ),
    ];
    let vault = version(KeyIdentity::InferredFromHint(used), None, now() - days(100));
    let d = decide(&p, &obs(&p, passwords.clone(), vault.clone()), now());
    // Without the flag, expired passwords the rotator did not create stay, but are mentioned.
    assert_eq!(d.steps, vec![Step::Adopt { key_id: used }]);
    let text = explanation(&d);
    assert!(
        text.contains(
            "was not created by secret-rotator and expired on 2026-09-13; it is left in place"
        ),
        "{text}"
    );
    assert!(text.contains("renewal is due"), "{text}");

    p.remove_unmanaged_expired = true;
    let d = decide(&p, &obs(&p, passwords, vault), now());
    assert_eq!(
        d.steps,
        vec![
            Step::RemovePassword {
                key_id: old1,
                reason: RemoveReason::ExpiredUnmanaged
            },
            Step::RemovePassword {
                key_id: old2,
                reason: RemoveReason::ExpiredUnmanaged
            },
            Step::Adopt { key_id: used },
        ]
    );
}

/// Runbook 001 (Provision Assist): a fresh enrolment, no tags, 9 days left.
#[test]
fn fresh_enrolment_inside_renewal_window() {
    let p = policy(consumers());
    let a = key(0x11);
    let end = now() + days(9);
    let o = obs(
        &p,
        vec![pw(a, None, now() - days(356), end)],
        version(KeyIdentity::InferredFromHint(a), None, now() - days(356)),
    );
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![
            Step::Adopt { key_id: a },
            Step::Rotate {
                reason: RotateReason::ExpiringSoon { expires: end },
                previous_key_id: Some(a),
                end: now() + days(180),
            }
        ]
    );
    assert!(
        explanation(&d).contains(
            "appSecret's password 3f2a… expires 2026-12-01 (9 days), inside the 30-day renewal window: rotate."
        ),
        "{}",
        explanation(&d)
    );
}

/// A fresh enrolment far from expiry: adopt only; once adopted, nothing until the renewal date.
#[test]
fn fresh_enrolment_far_from_expiry_then_nothing_to_do() {
    let p = policy(consumers());
    let a = key(1);
    let end = now() + days(200);
    let passwords = vec![pw(a, None, now() - days(10), end)];
    let d = decide(
        &p,
        &obs(
            &p,
            passwords.clone(),
            version(KeyIdentity::InferredFromHint(a), None, now()),
        ),
        now(),
    );
    assert_eq!(d.steps, vec![Step::Adopt { key_id: a }]);

    let d = decide(
        &p,
        &obs(
            &p,
            passwords,
            version(
                KeyIdentity::Tagged(a),
                Some(tags(a, None, Phase::Retired, vec![])),
                now(),
            ),
        ),
        now(),
    );
    assert!(d.steps.is_empty());
    assert_eq!(d.next_due, Some(end - days(30)));
    assert!(explanation(&d).contains("nothing to do"));
}

/// The Key Vault secret does not exist yet (runbook 004 deleted it): first rotation.
#[test]
fn vault_missing_rotates_not_stored() {
    let p = policy(consumers());
    let o = obs(&p, vec![], VaultState::Missing);
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![Step::Rotate {
            reason: RotateReason::NotStored,
            previous_key_id: None,
            end: now() + days(180)
        }]
    );
}

/// A run crashed after the new value was stored (phase Stored): resume consumer by consumer.
#[test]
fn mid_rotation_crash_after_stored_resumes_consumers() {
    let p = policy(consumers());
    let (old, new) = (key(1), key(2));
    let passwords = vec![
        ours(old, now() - days(170), now() + days(10)),
        ours(new, now() - days(1), now() + days(179)),
    ];
    let ids: Vec<ConsumerId> = p.consumers.iter().map(Consumer::id).collect();
    // Consumer 0 (Key Vault reference) observed in sync; 2 (Automation) recorded as updated;
    // 1 (API connection) and 3 (EzSign) not yet.
    let t = tags(new, Some(old), Phase::Stored, vec![ids[2].clone()]);
    let mut o = obs(
        &p,
        passwords.clone(),
        version(KeyIdentity::Tagged(new), Some(t.clone()), now() - days(1)),
    );
    for c in &mut o.consumers[1..] {
        c.sync = ConsumerSync::NotObservable { healthy: None };
    }
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![
            Step::UpdateConsumer {
                index: 1,
                consumer_id: ids[1].clone()
            },
            Step::Notify {
                index: 3,
                consumer_id: ids[3].clone()
            },
        ]
    );
    // The previous password stays while Stored, even though it is ours.
    assert!(
        !d.steps
            .iter()
            .any(|s| matches!(s, Step::RemovePassword { .. }))
    );

    // Once all are recorded: complete the propagation with remove_after = now + grace.
    let mut t2 = t.clone();
    t2.synced = vec![ids[1].clone(), ids[2].clone(), ids[3].clone()];
    let mut o2 = o.clone();
    o2.vault = version(KeyIdentity::Tagged(new), Some(t2), now() - days(1));
    let d = decide(&p, &o2, now());
    assert_eq!(
        d.steps,
        vec![Step::CompletePropagation {
            remove_after: now() + days(7)
        }]
    );

    // A consumer observed out of sync is updated even when recorded as synced.
    let mut o3 = o2.clone();
    o3.consumers[0].sync = ConsumerSync::OutOfSync {
        detail: "resolves version 1234".into(),
    };
    let d = decide(&p, &o3, now());
    assert_eq!(
        d.steps,
        vec![Step::UpdateConsumer {
            index: 0,
            consumer_id: ids[0].clone()
        }]
    );

    // A rotation still Stored at its own renewal date (a consumer held it up that long) is
    // renewed on time: the consumers on the current password keep it as the previous one.
    let d = decide(&p, &o2, now() + days(160));
    assert!(
        matches!(
            d.steps.as_slice(),
            [Step::Rotate {
                reason: RotateReason::ExpiringSoon { .. },
                previous_key_id: Some(k),
                ..
            }] if *k == new
        ),
        "{:?}",
        d.steps
    );
    // Before it, no new rotation while Stored...
    let d = decide(&p, &o2, now() + days(140));
    assert!(
        !d.steps.iter().any(|s| matches!(s, Step::Rotate { .. })),
        "{:?}",
        d.steps
    );

    // ...unless the stored value is refused: rotate, keeping the password consumers still hold.
    let mut o4 = o.clone();
    o4.current_value_accepted = Some(false);
    let d = decide(&p, &o4, now());
    assert_eq!(
        d.steps,
        vec![Step::Rotate {
            reason: RotateReason::CurrentValueRefused,
            previous_key_id: Some(old),
            end: now() + days(180)
        }]
    );
}

/// A run crashed between addPassword and storing in Key Vault: the new password is an orphan.
#[test]
fn orphan_after_crash_between_add_password_and_key_vault() {
    let p = policy(consumers());
    let (current, orphan) = (key(1), key(2));
    let created = now() - days(30);
    let passwords = vec![
        ours(current, created, now() + days(150)),
        ours(orphan, now() - Duration::hours(2), now() + days(180)),
    ];
    let vault = version(
        KeyIdentity::Tagged(current),
        Some(tags(current, None, Phase::Retired, vec![])),
        created,
    );
    let d = decide(&p, &obs(&p, passwords.clone(), vault), now());
    assert_eq!(
        d.steps,
        vec![Step::RemovePassword {
            key_id: orphan,
            reason: RemoveReason::Orphan
        }]
    );
    assert!(explanation(&d).contains("nobody can hold its value"));

    // A crash during the very first rotation: orphan removed, then the first rotation again.
    let d = decide(
        &p,
        &obs(&p, vec![passwords[1].clone()], VaultState::Missing),
        now(),
    );
    assert_eq!(
        d.steps,
        vec![
            Step::RemovePassword {
                key_id: orphan,
                reason: RemoveReason::Orphan
            },
            Step::Rotate {
                reason: RotateReason::NotStored,
                previous_key_id: None,
                end: now() + days(180)
            }
        ]
    );

    // While Stored, a newer marked password is also an orphan (crash of a refused-value retry).
    let (old, new, orphan2) = (key(3), key(4), key(5));
    let stored_at = now() - days(1);
    let passwords = vec![
        ours(old, now() - days(170), now() + days(10)),
        ours(new, stored_at, now() + days(179)),
        ours(orphan2, now() - Duration::hours(1), now() + days(180)),
    ];
    let vault = version(
        KeyIdentity::Tagged(new),
        Some(tags(new, Some(old), Phase::Stored, vec![])),
        stored_at,
    );
    let d = decide(&p, &obs(&p, passwords, vault), now());
    assert_eq!(
        d.steps.first(),
        Some(&Step::RemovePassword {
            key_id: orphan2,
            reason: RemoveReason::Orphan
        })
    );
    assert_eq!(
        d.steps
            .iter()
            .filter(|s| matches!(s, Step::RemovePassword { .. }))
            .count(),
        1
    );
}

// ---- Individual rules ----

#[test]
fn app_unreadable_is_blocked() {
    let p = policy(vec![]);
    let mut o = obs(&p, vec![], VaultState::Missing);
    o.app = Err("Graph answered 403 Authorization_RequestDenied".into());
    let d = decide(&p, &o, now());
    assert!(d.steps.is_empty());
    assert_eq!(
        d.blocked.as_deref(),
        Some(
            "the application for provision-assist cannot be read: Graph answered 403 Authorization_RequestDenied"
        )
    );
}

#[test]
fn inconsistent_observation_or_policy_is_blocked() {
    let p = policy(consumers());
    let mut o = obs(&p, vec![], VaultState::Missing);
    o.consumers.pop();
    let d = decide(&p, &o, now());
    assert!(d.steps.is_empty() && d.blocked.unwrap().contains("policy lists 4"));

    let mut o = obs(&p, vec![], VaultState::Missing);
    o.consumers[2].id = id("00000000deadbeef");
    assert!(
        decide(&p, &o, now())
            .blocked
            .unwrap()
            .contains("consumer #2")
    );

    let mut bad = policy(vec![]);
    bad.renew_before = days(200);
    let d = decide(&bad, &obs(&bad, vec![], VaultState::Missing), now());
    assert!(d.steps.is_empty() && d.blocked.is_some());
}

#[test]
fn propagated_waits_for_grace_then_removes_previous_and_retires() {
    let p = policy(consumers());
    let (old, new) = (key(1), key(2));
    let passwords = vec![
        ours(old, now() - days(170), now() + days(10)),
        ours(new, now() - days(1), now() + days(179)),
    ];
    let mut t = tags(new, Some(old), Phase::Propagated, vec![]);
    t.remove_after = Some(now() + days(6));
    let vault = version(KeyIdentity::Tagged(new), Some(t.clone()), now() - days(1));
    let mut o = obs(&p, passwords.clone(), vault);
    for c in &mut o.consumers[1..] {
        c.sync = ConsumerSync::NotObservable { healthy: None };
    }

    // Waiting: nothing to do; next due is the end of the grace period.
    let d = decide(&p, &o, now());
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert_eq!(d.next_due, Some(now() + days(6)));
    assert!(explanation(&d).contains("is kept until 2026-11-28 (grace period)"));

    // Past remove_after.
    let d = decide(&p, &o, now() + days(6));
    assert_eq!(
        d.steps,
        vec![
            Step::RemovePassword {
                key_id: old,
                reason: RemoveReason::Superseded
            },
            Step::MarkRetired
        ]
    );

    // The previous password expired before the grace period ended: removable at once.
    let mut o2 = o.clone();
    o2.app = app(vec![
        ours(old, now() - days(170), now() - days(1)),
        passwords[1].clone(),
    ]);
    let d = decide(&p, &o2, now());
    assert_eq!(d.steps.len(), 2);
    assert!(
        matches!(d.steps[0], Step::RemovePassword { key_id, reason: RemoveReason::Superseded } if key_id == old)
    );

    // Already gone: only MarkRetired.
    let mut o3 = o.clone();
    o3.app = app(vec![passwords[1].clone()]);
    assert_eq!(decide(&p, &o3, now()).steps, vec![Step::MarkRetired]);

    // Drift repair comes before removing the previous password.
    let mut o4 = o.clone();
    o4.consumers[0].sync = ConsumerSync::OutOfSync {
        detail: "pinned to an old version".into(),
    };
    let d = decide(&p, &o4, now() + days(6));
    assert!(matches!(d.steps[0], Step::UpdateConsumer { index: 0, .. }));
    assert_eq!(
        d.steps[1..],
        [
            Step::RemovePassword {
                key_id: old,
                reason: RemoveReason::Superseded
            },
            Step::MarkRetired
        ]
    );
}

#[test]
fn no_rotation_while_previous_waits_unless_urgent() {
    let mut p = policy(vec![]);
    p.renew_before = days(30);
    let (old, new) = (key(1), key(2));
    let mut t = tags(new, Some(old), Phase::Propagated, vec![]);
    t.remove_after = Some(now() + days(6));
    let vault = version(KeyIdentity::Tagged(new), Some(t), now() - days(1));
    // Current inside its renewal window, previous still in grace: wait.
    let passwords = vec![
        ours(old, now() - days(170), now() + days(100)),
        ours(new, now() - days(1), now() + days(20)),
    ];
    let d = decide(&p, &obs(&p, passwords, vault.clone()), now());
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert_eq!(d.next_due, Some(now() + days(6)));
    assert!(
        explanation(&d).contains("inside the 30-day renewal window: rotate. It waits until the previous password's grace period ends (2026-11-28)."),
        "{}",
        explanation(&d)
    );
    // Current expired: rotate at once.
    let passwords = vec![
        ours(old, now() - days(170), now() + days(100)),
        ours(new, now() - days(100), now() - days(1)),
    ];
    let d = decide(&p, &obs(&p, passwords, vault.clone()), now());
    assert_eq!(
        d.steps,
        vec![Step::Rotate {
            reason: RotateReason::Expired {
                expired: now() - days(1)
            },
            previous_key_id: Some(new),
            end: now() + days(180)
        }]
    );
    // Current missing from the application, and Entra refuses the value: rotate.
    let passwords = vec![ours(old, now() - days(170), now() + days(100))];
    let mut o = obs(&p, passwords.clone(), vault.clone());
    o.current_value_accepted = Some(false);
    let d = decide(&p, &o, now());
    assert!(matches!(
        d.steps.as_slice(),
        [Step::Rotate {
            reason: RotateReason::CurrentPasswordMissing,
            ..
        }]
    ));
    // Missing from Graph's read but accepted by Entra: Graph lags (eventual consistency), no
    // second rotation.
    let d = decide(&p, &obs(&p, passwords.clone(), vault.clone()), now());
    assert!(
        d.steps.iter().all(|s| !matches!(s, Step::Rotate { .. })),
        "{:?}",
        d.steps
    );
    // Refused: rotate.
    let passwords = vec![
        ours(old, now() - days(170), now() + days(100)),
        ours(new, now() - days(1), now() + days(179)),
    ];
    let mut o = obs(&p, passwords, vault);
    o.current_value_accepted = Some(false);
    assert!(matches!(
        decide(&p, &o, now()).steps.as_slice(),
        [Step::Rotate {
            reason: RotateReason::CurrentValueRefused,
            ..
        }]
    ));
}

#[test]
fn unknown_current_password_rotates_and_removes_nothing_else() {
    let mut p = policy(vec![]);
    p.remove_unmanaged_expired = true;
    let (a, b, mine) = (key(1), key(2), key(3));
    let passwords = vec![
        pw(a, None, now() - days(10), now() + days(100)),
        pw(b, None, now() - days(10), now() + days(100)),
        ours(mine, now() - days(300), now() + days(10)),
    ];
    let vault = version(
        KeyIdentity::Unknown {
            reason: "two passwords share the hint 'abc'".into(),
        },
        None,
        now() - days(10),
    );
    let mut o = obs(&p, passwords, vault);
    o.current_value_accepted = None;
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![Step::Rotate {
            reason: RotateReason::UnknownCurrentPassword {
                reason: "two passwords share the hint 'abc'".into()
            },
            previous_key_id: None,
            end: now() + days(180)
        }]
    );
    assert!(explanation(&d).contains("not removed while the current password is unknown"));
}

#[test]
fn tags_disagreeing_with_the_hint_count_as_unknown() {
    let p = policy(vec![]);
    let (a, b) = (key(1), key(2));
    let passwords = vec![
        ours(a, now() - days(10), now() + days(100)),
        ours(b, now() - days(5), now() + days(100)),
    ];
    let vault = version(
        KeyIdentity::InferredFromHint(b),
        Some(tags(a, None, Phase::Retired, vec![])),
        now() - days(10),
    );
    let mut o = obs(&p, passwords, vault);
    o.current_value_accepted = None;
    let d = decide(&p, &o, now());
    assert!(
        matches!(
            d.steps.as_slice(),
            [Step::Rotate {
                reason: RotateReason::UnknownCurrentPassword { .. },
                previous_key_id: None,
                ..
            }]
        ),
        "{:?}",
        d.steps
    );
}

#[test]
fn drift_is_repaired_in_retired() {
    let p = policy(consumers());
    let a = key(1);
    let vault = version(
        KeyIdentity::Tagged(a),
        Some(tags(a, None, Phase::Retired, vec![])),
        now() - days(10),
    );
    let mut o = obs(
        &p,
        vec![ours(a, now() - days(10), now() + days(170))],
        vault,
    );
    o.consumers[0].sync = ConsumerSync::OutOfSync {
        detail: "someone pasted another value".into(),
    };
    // Not observable and not in `synced` is not drift outside Stored.
    o.consumers[1].sync = ConsumerSync::NotObservable { healthy: None };
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![Step::UpdateConsumer {
            index: 0,
            consumer_id: p.consumers[0].id()
        }]
    );
    assert_eq!(d.next_due, None);
}

#[test]
fn other_credentials_marked_passwords_are_never_touched() {
    let mut p = policy(vec![]);
    p.remove_unmanaged_expired = true;
    let (a, other) = (key(1), key(2));
    let vault = version(
        KeyIdentity::Tagged(a),
        Some(tags(a, None, Phase::Retired, vec![])),
        now() - days(10),
    );
    let passwords = vec![
        ours(a, now() - days(10), now() + days(170)),
        pw(
            other,
            Some("secret-rotator:provision-assist-2:2026-01-01"),
            now() - days(400),
            now() - days(1),
        ),
    ];
    let d = decide(&p, &obs(&p, passwords, vault), now());
    assert!(d.steps.is_empty(), "{:?}", d.steps);
}

#[test]
fn retired_with_previous_still_present_removes_it() {
    let p = policy(vec![]);
    let (old, new) = (key(1), key(2));
    let vault = version(
        KeyIdentity::Tagged(new),
        Some(tags(new, Some(old), Phase::Retired, vec![])),
        now() - days(10),
    );
    let current = ours(new, now() - days(10), now() + days(170));
    let passwords = vec![
        ours(old, now() - days(200), now() + days(10)),
        current.clone(),
    ];
    assert_eq!(
        decide(&p, &obs(&p, passwords, vault.clone()), now()).steps,
        vec![Step::RemovePassword {
            key_id: old,
            reason: RemoveReason::Superseded
        }]
    );
    // A previous password the rotator did not create is left alone.
    let passwords = vec![pw(old, None, now() - days(200), now() + days(10)), current];
    let d = decide(&p, &obs(&p, passwords, vault), now());
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert!(explanation(&d).contains(
        "was not created by secret-rotator: it is left in place (it expires 2026-12-02)"
    ));
}

#[test]
fn adopted_previous_password_is_let_go_not_removed() {
    let mut p = policy(vec![]);
    let (manual, new) = (key(1), key(2));
    let mut t = tags(new, Some(manual), Phase::Propagated, vec![]);
    t.remove_after = Some(now() - days(1));
    let vault = version(KeyIdentity::Tagged(new), Some(t), now() - days(8));
    let current = ours(new, now() - days(8), now() + days(172));
    let passwords = vec![
        pw(
            manual,
            Some("portal secret"),
            now() - days(300),
            now() + days(20),
        ),
        current.clone(),
    ];
    let d = decide(&p, &obs(&p, passwords, vault.clone()), now());
    assert_eq!(d.steps, vec![Step::MarkRetired]);
    // Once expired, and with the flag, it goes as an expired unmanaged password.
    p.remove_unmanaged_expired = true;
    let passwords = vec![
        pw(
            manual,
            Some("portal secret"),
            now() - days(300),
            now() - days(1),
        ),
        current,
    ];
    let d = decide(&p, &obs(&p, passwords, vault), now());
    assert_eq!(
        d.steps,
        vec![
            Step::RemovePassword {
                key_id: manual,
                reason: RemoveReason::ExpiredUnmanaged
            },
            Step::MarkRetired
        ]
    );
}

#[test]
fn extreme_times_block_instead_of_panicking() {
    let p = policy(vec![]);
    let d = decide(
        &p,
        &obs(&p, vec![], VaultState::Missing),
        DateTime::<Utc>::MAX_UTC,
    );
    assert!(d.steps.is_empty());
    assert!(d.blocked.unwrap().contains("out of range"));
}

#[test]
fn describe_step_is_one_readable_line() {
    let k = Uuid::parse_str("3f2a9c1e-0000-4000-8000-000000000001").unwrap();
    let cases = [
        (
            Step::Rotate {
                reason: RotateReason::ExpiringSoon {
                    expires: now() + days(9),
                },
                previous_key_id: Some(k),
                end: now() + days(180),
            },
            "rotate (expires 2026-12-01): add a password valid until 2027-05-21 05:00 UTC, verify it and store it in Key Vault, replacing password 3f2a9c1e-0000-4000-8000-000000000001",
        ),
        (
            Step::RemovePassword {
                key_id: k,
                reason: RemoveReason::Orphan,
            },
            "remove password 3f2a9c1e-0000-4000-8000-000000000001 (orphan of a run that crashed before storing it)",
        ),
        (
            Step::MarkRetired,
            "mark the rotation retired (previous password gone)",
        ),
        (
            Step::UpdateConsumer {
                index: 2,
                consumer_id: id("000000000a1b2c3d"),
            },
            "update consumer #2 (000000000a1b2c3d) to the current version and confirm it",
        ),
    ];
    for (step, want) in cases {
        assert_eq!(describe_step(&step), want);
    }
    for step in [
        Step::Adopt { key_id: k },
        Step::Notify {
            index: 0,
            consumer_id: id("0000000000000000"),
        },
        Step::CompletePropagation {
            remove_after: now(),
        },
    ] {
        let line = describe_step(&step);
        assert!(!line.is_empty() && !line.contains('\n'));
    }
}

#[test]
fn forced_rotation_keeps_cleanup_and_the_right_previous() {
    let p = policy(consumers());
    let (a, orphan) = (key(1), key(2));
    let created = now() - days(30);
    let passwords = vec![
        ours(a, created, now() + days(150)),
        ours(orphan, now() - Duration::hours(2), now() + days(180)),
    ];
    let vault = version(
        KeyIdentity::Tagged(a),
        Some(tags(a, None, Phase::Retired, vec![])),
        created,
    );
    let o = obs(&p, passwords.clone(), vault);
    let d = decide_forced(&p, &o, now());
    assert_eq!(
        d.steps,
        vec![
            Step::RemovePassword {
                key_id: orphan,
                reason: RemoveReason::Orphan
            },
            Step::Rotate {
                reason: RotateReason::Forced,
                previous_key_id: Some(a),
                end: now() + days(180)
            }
        ]
    );
    // While Stored, the consumers' password is the previous one.
    let old = key(3);
    let vault = version(
        KeyIdentity::Tagged(a),
        Some(tags(a, Some(old), Phase::Stored, vec![])),
        created,
    );
    let mut passwords = passwords;
    passwords.push(ours(old, now() - days(200), now() + days(20)));
    let d = decide_forced(&p, &obs(&p, passwords, vault), now());
    assert!(matches!(
        d.steps.last(),
        Some(Step::Rotate { reason: RotateReason::Forced, previous_key_id: Some(k), .. }) if *k == old
    ));
    assert!(
        !d.steps
            .iter()
            .any(|s| matches!(s, Step::UpdateConsumer { .. } | Step::Notify { .. }))
    );
    // Blocked stays blocked.
    let mut o = obs(&p, vec![], VaultState::Missing);
    o.app = Err("gone".into());
    assert!(decide_forced(&p, &o, now()).blocked.is_some());
}

/// Issue 18: a consumer that cannot be read or written is held on its own. The others move,
/// the rotation waits for it (no `CompletePropagation`), its reason is in `held_up`, and the
/// next renewal still falls due on time.
#[test]
fn blocked_consumer_is_held_alone_and_the_others_move() {
    let p = policy(consumers());
    let (old, new) = (key(1), key(2));
    let passwords = vec![
        ours(old, now() - days(170), now() + days(10)),
        ours(new, now() - days(1), now() + days(179)),
    ];
    let t = tags(new, Some(old), Phase::Stored, vec![]);
    let mut o = obs(
        &p,
        passwords,
        version(KeyIdentity::Tagged(new), Some(t), now() - days(1)),
    );
    let reason = "reading it failed: access denied: AuthorizationFailed; give the rotator's identity the Secret Rotator Site Settings Updater role on the site";
    o.consumers[0].sync = ConsumerSync::Blocked {
        reason: reason.into(),
    };
    o.consumers[1].sync = ConsumerSync::NotObservable { healthy: None };
    o.consumers[2].sync = ConsumerSync::NotObservable { healthy: None };
    o.consumers[3].sync = ConsumerSync::NotObservable { healthy: None };
    let d = decide(&p, &o, now());
    let indices: Vec<usize> = d
        .steps
        .iter()
        .map(|s| match s {
            Step::UpdateConsumer { index, .. } | Step::Notify { index, .. } => *index,
            other => panic!("unexpected step {other:?}"),
        })
        .collect();
    assert_eq!(indices, [1, 2, 3], "{d:#?}");
    assert_eq!(d.held_up.len(), 1);
    assert!(d.held_up[0].contains("func-int") && d.held_up[0].contains(reason));

    // Once the others are recorded, only the blocked one is left: no steps, no propagation,
    // the renewal date as the next due date.
    let ids: Vec<ConsumerId> = p.consumers.iter().map(Consumer::id).collect();
    let t = tags(new, Some(old), Phase::Stored, ids[1..].to_vec());
    o.vault = version(KeyIdentity::Tagged(new), Some(t), now() - days(1));
    let d = decide(&p, &o, now());
    assert!(d.steps.is_empty() && d.blocked.is_none(), "{d:#?}");
    assert_eq!(d.next_due, Some(now() + days(179) - days(30)));
    assert!(explanation(&d).contains("whatever they do"), "{d:#?}");

    // A blocked consumer does not stop the renewal of a settled credential either.
    let t = tags(new, None, Phase::Retired, vec![]);
    o.vault = version(KeyIdentity::Tagged(new), Some(t), now() - days(1));
    let d = decide(&p, &o, now() + days(150));
    assert!(
        d.steps.iter().any(|s| matches!(
            s,
            Step::Rotate {
                reason: RotateReason::ExpiringSoon { .. },
                ..
            }
        )),
        "{d:#?}"
    );
}

/// While `Stored`, an older password of the rotator's is kept for consumers that may still hold
/// it, but never past its own expiry.
#[test]
fn stored_keeps_older_passwords_only_until_they_expire() {
    let p = policy(consumers());
    let (older, old, new) = (key(1), key(2), key(3));
    let passwords = vec![
        ours(older, now() - days(300), now() - days(1)),
        ours(old, now() - days(170), now() + days(10)),
        ours(new, now() - days(1), now() + days(179)),
    ];
    let t = tags(new, Some(old), Phase::Stored, vec![]);
    let o = obs(
        &p,
        passwords,
        version(KeyIdentity::Tagged(new), Some(t), now() - days(1)),
    );
    let d = decide(&p, &o, now());
    assert_eq!(
        d.steps.first(),
        Some(&Step::RemovePassword {
            key_id: older,
            reason: RemoveReason::Orphan
        }),
        "{d:#?}"
    );
    assert!(
        !d.steps
            .iter()
            .any(|s| matches!(s, Step::RemovePassword { key_id, .. } if *key_id == old))
    );
}

/// Fault campaign seeds 9500079/9500142: a run crashed between addPassword and storing the
/// value; the next run, seconds later, did not see that password (Graph's read lag) and rotated
/// for a first time. While a broken consumer holds the rotation in `Stored`, the crashed run's
/// password "predates the current version", so it was kept for consumers who might hold it —
/// but no Key Vault version ever held its value, so nobody can: it is an orphan, removed now.
/// One a version did name (or an untagged version written after it might hold) is still kept.
#[test]
fn stored_removes_a_password_no_key_vault_version_ever_held() {
    let p = policy(consumers());
    let (crashed, current, older) = (key(1), key(2), key(3));
    let passwords = vec![
        ours(older, now() - days(100), now() + days(80)),
        ours(crashed, now() - days(1), now() + days(179)),
        ours(
            current,
            now() - days(1) + Duration::seconds(1),
            now() + days(179),
        ),
    ];
    let t = tags(current, None, Phase::Stored, vec![]);
    let mut o = obs(
        &p,
        passwords,
        version(
            KeyIdentity::Tagged(current),
            Some(t),
            now() - days(1) + Duration::seconds(2),
        ),
    );
    o.consumers[0].sync = ConsumerSync::Blocked {
        reason: "the reference never resolves".into(),
    };
    let removes = |d: &Decision, k: Uuid| {
        d.steps
            .iter()
            .any(|s| matches!(s, Step::RemovePassword { key_id, reason: RemoveReason::Orphan } if *key_id == k))
    };
    // Without the version list the planner cannot tell: both are kept (as before).
    let d = decide(&p, &o, now());
    assert!(!removes(&d, crashed) && !removes(&d, older), "{d:#?}");
    // The list: a version before enrolment without tags, one naming `older`, the current one.
    let listed = |k: Option<Uuid>, created: DateTime<Utc>| VersionRecord {
        key_id: k,
        created: Some(created),
    };
    o.versions = Some(vec![
        listed(None, now() - days(400)),
        listed(Some(older), now() - days(100)),
        listed(Some(current), now() - days(1) + Duration::seconds(2)),
    ]);
    let d = decide(&p, &o, now());
    assert!(removes(&d, crashed), "{d:#?}");
    assert!(!removes(&d, older), "{d:#?}");
    assert!(
        explanation(&d).contains("no Key Vault version names it"),
        "{d:#?}"
    );
    // An untagged version written after the crashed run's password might hold its value.
    o.versions
        .as_mut()
        .expect("listed")
        .push(listed(None, now() - days(1) + Duration::seconds(3)));
    let d = decide(&p, &o, now());
    assert!(!removes(&d, crashed), "{d:#?}");
}

/// A forced rotation inside a grace period (a leaked current password): it rotates at once with
/// the current password as previous; the one before it goes once the new value has propagated,
/// said as what it is (not a crashed run's orphan), and the leaked one keeps the policy's grace.
#[test]
fn forced_rotation_inside_grace_replaces_the_current_password() {
    let p = policy(consumers());
    let (old, leaked, new) = (key(1), key(2), key(3));
    let rotated = now() - days(2);
    let mut t = tags(leaked, Some(old), Phase::Propagated, vec![]);
    t.remove_after = Some(now() + days(5));
    let passwords = vec![
        ours(old, now() - days(100), now() + days(80)),
        ours(leaked, rotated, now() + days(178)),
    ];
    let o = obs(
        &p,
        passwords.clone(),
        version(KeyIdentity::Tagged(leaked), Some(t), rotated),
    );
    assert!(
        decide(&p, &o, now()).steps.is_empty(),
        "nothing due in grace"
    );
    let d = decide_forced(&p, &o, now());
    assert!(
        matches!(
            d.steps.as_slice(),
            [Step::Rotate { reason: RotateReason::Forced, previous_key_id: Some(k), .. }] if *k == leaked
        ),
        "{d:?}"
    );

    // The new value has propagated: the password before the leaked one goes now, the leaked
    // one after the grace period.
    let later = now() + Duration::hours(1);
    let mut t = tags(new, Some(leaked), Phase::Propagated, vec![]);
    t.remove_after = Some(later + p.grace);
    let mut passwords = passwords;
    passwords.push(ours(new, now(), now() + days(180)));
    let o = obs(
        &p,
        passwords,
        version(KeyIdentity::Tagged(new), Some(t), now()),
    );
    let d = decide(&p, &o, later);
    assert_eq!(
        d.steps,
        vec![Step::RemovePassword {
            key_id: old,
            reason: RemoveReason::Orphan
        }],
        "{}",
        explanation(&d)
    );
    assert!(
        explanation(&d).contains("replaced early"),
        "{}",
        explanation(&d)
    );
}

#[test]
fn the_password_marker_is_read_as_it_is_written() {
    let name = PasswordMarker::display_name("pa", now());
    assert!(name.starts_with("secret-rotator:pa:20"), "{name}");
    assert!(PasswordMarker::is_for(&name, "pa"));
    assert!(PasswordMarker::is_rotators(&name));
    assert!(
        !PasswordMarker::is_for(&name, "p"),
        "a prefix of the name is another credential"
    );
    let other = PasswordMarker::display_name("pa-2", now());
    assert!(!PasswordMarker::is_for(&other, "pa"));
    assert!(!PasswordMarker::is_rotators("Provision Assist deployment"));
}

#[test]
fn step_kinds_keep_the_names_reports_and_audits_carry() {
    let k = Uuid::from_u128(1);
    let id = |s: &str| ConsumerId::parse(s).unwrap();
    let steps = [
        (Step::Adopt { key_id: k }, "adopt"),
        (
            Step::UpdateConsumer {
                index: 0,
                consumer_id: id("0000000000000001"),
            },
            "update-consumer",
        ),
        (
            Step::Notify {
                index: 0,
                consumer_id: id("0000000000000001"),
            },
            "notify",
        ),
        (
            Step::CompletePropagation {
                remove_after: now(),
            },
            "complete-propagation",
        ),
        (
            Step::RemovePassword {
                key_id: k,
                reason: RemoveReason::Orphan,
            },
            "remove-password",
        ),
        (Step::MarkRetired, "mark-retired"),
    ];
    for (step, name) in steps {
        assert_eq!(step.kind().as_str(), name);
        assert_eq!(
            serde_json::to_value(step.kind()).unwrap(),
            serde_json::json!(name)
        );
    }
    assert_eq!(format!("{:<8}|", StepKind::Rotate), "rotate  |");
}

/// Consumer steps of one decision on different resources go together; a second setting of a
/// site already in the batch, a `Notify` and whatever follows the consumer steps do not.
#[test]
fn independent_consumer_updates_form_one_batch() {
    let mut cs = consumers();
    cs.push(Consumer::AppSettingValue {
        site: ArmResource {
            name: "FUNC-INT".into(),
            ..res("x")
        },
        setting: "Other".into(),
    });
    cs.push(Consumer::AutomationVariable {
        account: res("provisionassist-auto"),
        variable: "secondSecret".into(),
    });
    let p = policy(cs);
    let update = |index: usize| Step::UpdateConsumer {
        index,
        consumer_id: p.consumers[index].id(),
    };
    let notify = Step::Notify {
        index: 3,
        consumer_id: p.consumers[3].id(),
    };
    let steps = vec![
        update(0),
        notify.clone(),
        update(4),
        update(1),
        update(2),
        update(5),
        Step::MarkRetired,
    ];
    // 4 is the same site as 0 (ARM ids compare case-insensitively); 5 is another variable of
    // the same account, its own resource.
    assert_eq!(
        first_batch(&p, &steps),
        vec![update(0), update(1), update(2), update(5)]
    );
    // What is left comes in the next decision.
    assert_eq!(first_batch(&p, &steps[2..3]), vec![update(4)]);
    // Anything else goes alone, as before.
    assert_eq!(first_batch(&p, &steps[1..]), vec![notify]);
    let removal = Step::RemovePassword {
        key_id: key(1),
        reason: RemoveReason::Orphan,
    };
    assert_eq!(
        first_batch(&p, &[removal.clone(), update(1)]),
        vec![removal]
    );
    assert!(first_batch(&p, &[]).is_empty());
    // A step for a consumer the policy does not have goes alone (the executor refuses it).
    let stray = Step::UpdateConsumer {
        index: 99,
        consumer_id: id("0000000000000099"),
    };
    assert_eq!(first_batch(&p, &[stray.clone(), update(1)]), vec![stray]);
}
