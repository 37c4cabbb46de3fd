//! Property tests of the planner's guarantees (see the parent module's "Guarantees").
//!
//! Observations are generated from a small pool of key ids so that tags, hints, previous ids and
//! passwords collide often (the adversarial cases: tags naming a missing password, previous ==
//! current, marked passwords of other credentials, consumers observed under wrong ids...).
//! `simulated_runs_converge` applies each decision's first step to a model of Azure and decides
//! again, as the executor does, and checks the run settles with a usable password in Key Vault.

use super::*;
use crate::policy::{AppRef, ArmResource, Consumer, CredentialPolicy, VaultSecretRef};
use chrono::{DateTime, Duration, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

const NAME: &str = "provision-assist";

/// 2000 cases by default; `PROPTEST_CASES` raises it for a longer soak.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // Deterministic by default (the same cases on every run and in CI); PROPTEST_RNG_SEED picks
    // another fixed seed and PROPTEST_CASES more cases, for longer explorations.
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_122);
    ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::with_cases(cases)
    }
}

fn base() -> DateTime<Utc> {
    super::tests::now()
}

fn key(n: u8) -> Uuid {
    Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + u128::from(n))
}

fn at(hours: i64) -> DateTime<Utc> {
    base() + Duration::hours(hours)
}

/// ±4 years around the base time, in hours.
fn hours() -> impl Strategy<Value = i64> {
    -35_000i64..35_000
}

fn display() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("ezsign2".to_string())),
        Just(Some(String::new())),
        Just(Some(format!("{MARKER_PREFIX}{NAME}:2026-01-01"))),
        Just(Some(format!("{MARKER_PREFIX}{NAME}:2026-06-01"))),
        // Marked, but for other credentials: never ours to remove.
        Just(Some(format!("{MARKER_PREFIX}other:2026-01-01"))),
        Just(Some(format!("{MARKER_PREFIX}{NAME}-2:2026-01-01"))),
        Just(Some(format!("{MARKER_PREFIX}{NAME}"))),
    ]
}

fn passwords() -> impl Strategy<Value = Vec<PasswordInfo>> {
    vec(
        (
            0u8..7,
            display(),
            proptest::option::weighted(0.9, hours()),
            proptest::option::weighted(0.95, hours()),
        ),
        0..6,
    )
    .prop_map(|raw| {
        let mut out: Vec<PasswordInfo> = Vec::new();
        for (k, display_name, start, end) in raw {
            if out.iter().any(|p| p.key_id == key(k)) {
                continue;
            }
            out.push(PasswordInfo {
                key_id: key(k),
                display_name,
                hint: Some("abc".into()),
                start: start.map(at),
                end: end.map(at),
            });
        }
        out
    })
}

fn res(name: String) -> ArmResource {
    ArmResource {
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        resource_group: "rg".into(),
        name,
        slot: None,
    }
}

fn consumers() -> impl Strategy<Value = Vec<Consumer>> {
    vec(0u8..5, 0..5).prop_map(|kinds| {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| match k {
                0 => Consumer::AppSettingKeyVaultRef {
                    site: res(format!("func-{i}")),
                    setting: "TeamsClientSecret".into(),
                },
                1 => Consumer::AppSettingValue {
                    site: res(format!("web-{i}")),
                    setting: "ClientSecret".into(),
                },
                2 => Consumer::ApiConnection {
                    connection: res(format!("conn-{i}")),
                    parameter: "token:clientSecret".into(),
                },
                3 => Consumer::AutomationVariable {
                    account: res(format!("auto-acct-{i}")),
                    variable: "appSecret".into(),
                },
                _ => Consumer::NotifyOnly {
                    system: format!("EzSign {i}"),
                    instructions: "Set Passwords, restart".into(),
                },
            })
            .collect()
    })
}

fn make_policy(
    renew: i64,
    lifetime: i64,
    grace: i64,
    flag: bool,
    consumers: Vec<Consumer>,
) -> CredentialPolicy {
    CredentialPolicy {
        name: NAME.into(),
        application: AppRef::AppId(Uuid::from_u128(7)),
        tenant_id: None,
        key_vault: VaultSecretRef {
            vault: "kv-pa".into(),
            secret: "appSecret".into(),
        },
        renew_before: Duration::days(renew),
        lifetime: Duration::days(lifetime),
        grace: Duration::days(grace),
        remove_unmanaged_expired: flag,
        consumers,
    }
}

/// Policies the parser accepts.
fn valid_policy() -> impl Strategy<Value = CredentialPolicy> {
    (2i64..=730)
        .prop_flat_map(|l| (Just(l), 1i64..l))
        .prop_flat_map(|(l, r)| (Just(l), Just(r), 0i64..(l - r).min(91)))
        .prop_flat_map(|(l, r, g)| (Just(l), Just(r), Just(g), any::<bool>(), consumers()))
        .prop_map(|(l, r, g, flag, c)| make_policy(r, l, g, flag, c))
}

/// Any policy, including ones the parser would refuse (the planner must still not panic).
fn any_policy() -> impl Strategy<Value = CredentialPolicy> {
    prop_oneof![
        3 => valid_policy(),
        1 => (-1000i64..100_000, -1000i64..100_000, -1000i64..100_000, any::<bool>(), consumers())
            .prop_map(|(r, l, g, f, c)| make_policy(r, l, g, f, c)),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Stored),
        Just(Phase::Propagated),
        Just(Phase::Retired)
    ]
}

/// Raw material for the rotator's tags; `synced` is a bit mask over the policy's consumers.
#[derive(Debug, Clone)]
struct RawTags {
    key: u8,
    previous: Option<u8>,
    phase: Phase,
    rotated_at: Option<i64>,
    remove_after: Option<i64>,
    synced_mask: u8,
}

fn raw_tags() -> impl Strategy<Value = RawTags> {
    (
        0u8..7,
        proptest::option::of(0u8..7),
        phase(),
        proptest::option::of(hours()),
        proptest::option::of(hours()),
        any::<u8>(),
    )
        .prop_map(
            |(key, previous, phase, rotated_at, remove_after, synced_mask)| RawTags {
                key,
                previous,
                phase,
                rotated_at,
                remove_after,
                synced_mask,
            },
        )
}

fn tags_from(raw: &RawTags, policy: &CredentialPolicy) -> RotationTags {
    RotationTags {
        key_id: key(raw.key),
        previous_key_id: raw.previous.map(key),
        phase: raw.phase,
        rotated_at: raw.rotated_at.map(at),
        remove_after: raw.remove_after.map(at),
        synced: policy
            .consumers
            .iter()
            .enumerate()
            .filter(|(i, _)| raw.synced_mask & (1 << (i % 8)) != 0)
            .map(|(_, c)| c.id())
            .collect(),
    }
}

fn sync() -> impl Strategy<Value = ConsumerSync> {
    prop_oneof![
        Just(ConsumerSync::InSync),
        Just(ConsumerSync::OutOfSync {
            detail: "another version".into()
        }),
        proptest::option::of(any::<bool>())
            .prop_map(|healthy| ConsumerSync::NotObservable { healthy }),
        Just(ConsumerSync::Blocked {
            reason: "ARM 403".into()
        }),
    ]
}

fn identity() -> impl Strategy<Value = KeyIdentity> {
    prop_oneof![
        (0u8..7).prop_map(|k| KeyIdentity::Tagged(key(k))),
        (0u8..7).prop_map(|k| KeyIdentity::InferredFromHint(key(k))),
        Just(KeyIdentity::Unknown {
            reason: "two hints match".into()
        }),
    ]
}

/// An arbitrary, possibly inconsistent observation for `policy`.
fn observation(policy: CredentialPolicy) -> impl Strategy<Value = (CredentialPolicy, Observation)> {
    let n = policy.consumers.len();
    (
        Just(policy),
        prop_oneof![9 => passwords().prop_map(Ok), 1 => Just(Err("403 from Graph".to_string()))],
        proptest::option::weighted(
            0.85,
            (
                identity(),
                proptest::option::of(raw_tags()),
                proptest::option::of(hours()),
            ),
        ),
        proptest::option::of(any::<bool>()),
        vec(sync(), n..=n),
        0u8..30,
    )
        .prop_map(|(policy, pw, vault, accepted, syncs, corrupt)| {
            let vault = match vault {
                None => VaultState::Missing,
                Some((identity, tags, created)) => VaultState::Current(VaultVersion {
                    version: "0".repeat(32),
                    created: created.map(at),
                    identity,
                    tags: tags.map(|t| tags_from(&t, &policy)),
                }),
            };
            let mut consumers: Vec<ConsumerObservation> = policy
                .consumers
                .iter()
                .zip(syncs)
                .map(|(c, sync)| ConsumerObservation { id: c.id(), sync })
                .collect();
            // Occasionally an executor bug: a wrong id or a missing observation.
            match corrupt {
                0 if !consumers.is_empty() => {
                    consumers[0].id = crate::policy::ConsumerId::parse("ffffffffffffffff").unwrap()
                }
                1 => {
                    consumers.pop();
                }
                _ => {}
            }
            let obs = Observation {
                app: pw.map(|passwords| AppState {
                    object_id: Uuid::from_u128(8),
                    app_id: Uuid::from_u128(7),
                    display_name: "app".into(),
                    passwords,
                }),
                vault,
                current_value_accepted: accepted,
                consumers,
                versions: None,
            };
            (policy, obs)
        })
}

fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        20 => hours().prop_map(at),
        1 => Just(DateTime::<Utc>::MAX_UTC),
        1 => Just(DateTime::<Utc>::MIN_UTC),
    ]
}

fn current_key(obs: &Observation) -> Option<Uuid> {
    match &obs.vault {
        VaultState::Current(VaultVersion {
            identity: KeyIdentity::Tagged(k) | KeyIdentity::InferredFromHint(k),
            ..
        }) => Some(*k),
        _ => None,
    }
}

/// Every single-decision guarantee.
fn check(policy: &CredentialPolicy, obs: &Observation, now: DateTime<Utc>, d: &Decision) {
    if d.blocked.is_some() {
        assert!(d.steps.is_empty(), "blocked with steps: {d:?}");
    }
    let current = current_key(obs);
    let ours = format!("{MARKER_PREFIX}{}:", policy.name);
    let passwords: &[PasswordInfo] = match &obs.app {
        Ok(a) => &a.passwords,
        Err(_) => {
            assert!(d.steps.is_empty() && d.blocked.is_some());
            &[]
        }
    };
    let mut removed = Vec::new();
    for step in &d.steps {
        if let Step::RemovePassword { key_id, reason } = step {
            assert_ne!(
                Some(*key_id),
                current,
                "removes the current password: {d:?}"
            );
            assert!(!removed.contains(key_id), "removes {key_id} twice: {d:?}");
            removed.push(*key_id);
            let p = passwords
                .iter()
                .find(|p| p.key_id == *key_id)
                .unwrap_or_else(|| panic!("removes a password that is not there: {d:?}"));
            let name = p.display_name.as_deref().unwrap_or("");
            if !name.starts_with(MARKER_PREFIX) {
                assert_eq!(*reason, RemoveReason::ExpiredUnmanaged, "{d:?}");
                assert!(
                    policy.remove_unmanaged_expired,
                    "unmanaged removed without the flag"
                );
                assert!(
                    p.end.is_some_and(|e| e <= now),
                    "unmanaged unexpired removed"
                );
            } else {
                assert!(
                    name.starts_with(&ours),
                    "another credential's password removed: {d:?}"
                );
            }
        }
        if let Step::UpdateConsumer { index, consumer_id } | Step::Notify { index, consumer_id } =
            step
        {
            assert!(*index < policy.consumers.len());
            assert!(
                !matches!(obs.consumers[*index].sync, ConsumerSync::Blocked { .. }),
                "a step for a blocked consumer: {d:?}"
            );
            assert_eq!(*consumer_id, policy.consumers[*index].id());
            assert_eq!(
                matches!(step, Step::Notify { .. }),
                matches!(policy.consumers[*index], Consumer::NotifyOnly { .. })
            );
        }
    }
    let rotates = d
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Rotate { .. }))
        .count();
    let updates = d
        .steps
        .iter()
        .any(|s| matches!(s, Step::UpdateConsumer { .. } | Step::Notify { .. }));
    assert!(rotates <= 1, "{d:?}");
    assert!(
        !(rotates == 1 && updates),
        "rotate together with a consumer update: {d:?}"
    );
    for s in &d.steps {
        if let Step::Rotate { end, .. } = s {
            assert_eq!(*end - now, policy.lifetime);
        }
    }
    if !d.steps.is_empty() {
        assert_eq!(d.next_due, None);
    } else if d.blocked.is_none() {
        // Idle means nothing is due yet: the next date lies in the future.
        assert!(
            d.next_due.is_none_or(|t| t > now),
            "next_due in the past: {d:?}"
        );
    }
    // Every consumer named as holding things up is a blocked one, named with its reason.
    let blocked = obs
        .consumers
        .iter()
        .filter(|c| matches!(c.sync, ConsumerSync::Blocked { .. }))
        .count();
    assert!(d.held_up.len() <= blocked, "{d:?}");
    assert!(d.held_up.iter().all(|h| h.contains("ARM 403")), "{d:?}");
    assert_eq!(&decide(policy, obs, now), d, "not deterministic");
}

fn check_forced(policy: &CredentialPolicy, obs: &Observation, now: DateTime<Utc>, f: &Decision) {
    if f.blocked.is_some() {
        assert!(f.steps.is_empty());
        return;
    }
    let rotates = f
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Rotate { .. }))
        .count();
    assert_eq!(rotates, 1, "{f:?}");
    let current = current_key(obs);
    for s in &f.steps {
        match s {
            Step::Rotate { end, .. } => assert_eq!(*end - now, policy.lifetime),
            Step::RemovePassword { key_id, .. } => assert_ne!(Some(*key_id), current),
            Step::UpdateConsumer { .. } | Step::Notify { .. } => {
                panic!("update with rotate: {f:?}")
            }
            _ => {}
        }
    }
    assert_eq!(&decide_forced(policy, obs, now), f);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_decision_keeps_the_guarantees(
        (policy, obs) in any_policy().prop_flat_map(observation),
        now in any_now(),
    ) {
        let d = decide(&policy, &obs, now);
        check(&policy, &obs, now, &d);
        for s in &d.steps {
            prop_assert!(!describe_step(s).is_empty());
        }
        // Forced: the same guarantees, and exactly one Rotate unless blocked.
        let f = decide_forced(&policy, &obs, now);
        check_forced(&policy, &obs, now, &f);
    }
}

/// The model of Azure the simulation applies steps to.
#[derive(Debug, Clone)]
struct World {
    passwords: Vec<PasswordInfo>,
    /// (the password the stored value is, tags, created)
    vault: Option<(Uuid, Option<RotationTags>, Option<DateTime<Utc>>)>,
    /// Which password's value each consumer holds.
    holds: Vec<Option<Uuid>>,
    /// Whether the executor tries a token request with the stored value.
    probes: bool,
    next_key: u128,
    /// Consumers that can never be read nor written (observed `Blocked`).
    broken: Vec<bool>,
    /// Key Vault's version list: every password whose value was ever stored. A starting state
    /// has one version per password a consumer holds (values reach consumers only from Key
    /// Vault), and the current one.
    versions: Vec<VersionRecord>,
}

impl World {
    fn observe(&self, policy: &CredentialPolicy, now: DateTime<Utc>) -> Observation {
        let find = |k: Uuid| self.passwords.iter().find(|p| p.key_id == k);
        let vault = match &self.vault {
            None => VaultState::Missing,
            Some((k, tags, created)) => {
                // What an executor reports: tags confirmed by the hint, a unique hint match,
                // or unknown.
                let identity = match tags {
                    Some(t) if t.key_id != *k => KeyIdentity::Unknown {
                        reason: "the tags name another password".into(),
                    },
                    Some(_) => KeyIdentity::Tagged(*k),
                    None if find(*k).is_some() => KeyIdentity::InferredFromHint(*k),
                    None => KeyIdentity::Unknown {
                        reason: "no password's hint matches".into(),
                    },
                };
                VaultState::Current(VaultVersion {
                    version: "0".repeat(32),
                    created: *created,
                    identity,
                    tags: tags.clone(),
                })
            }
        };
        let stored = self.vault.as_ref().map(|v| v.0);
        let accepted = self.probes.then(|| {
            stored
                .and_then(find)
                .is_some_and(|p| p.end.is_none_or(|e| e > now))
        });
        let consumers = policy
            .consumers
            .iter()
            .zip(&self.holds)
            .zip(&self.broken)
            .map(|((c, held), broken)| ConsumerObservation {
                id: c.id(),
                sync: match c {
                    _ if *broken => ConsumerSync::Blocked {
                        reason: "ARM 403 on the site".into(),
                    },
                    Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. } => {
                        if *held == stored {
                            ConsumerSync::InSync
                        } else {
                            ConsumerSync::OutOfSync {
                                detail: "holds another value".into(),
                            }
                        }
                    }
                    _ => ConsumerSync::NotObservable { healthy: None },
                },
            })
            .collect();
        Observation {
            app: Ok(AppState {
                object_id: Uuid::from_u128(8),
                app_id: Uuid::from_u128(7),
                display_name: "app".into(),
                passwords: self.passwords.clone(),
            }),
            vault,
            current_value_accepted: accepted,
            consumers,
            versions: Some(self.versions.clone()),
        }
    }

    /// Settled with the stored value's password known from the rotator's own tags.
    fn healthy(&self) -> bool {
        matches!(&self.vault, Some((k, Some(t), _)) if t.key_id == *k)
    }

    /// The password `k` exists and has not expired at `now`.
    fn alive(&self, k: Option<Uuid>, now: DateTime<Utc>) -> bool {
        k.and_then(|k| self.passwords.iter().find(|p| p.key_id == k))
            .is_some_and(|p| p.end.is_none_or(|e| e > now))
    }

    fn tags_mut(&mut self) -> &mut RotationTags {
        self.vault
            .as_mut()
            .and_then(|v| v.1.as_mut())
            .expect("step needs a tagged version")
    }

    fn apply(&mut self, step: &Step, now: DateTime<Utc>) {
        match step {
            Step::Adopt { key_id } => {
                let v = self.vault.as_mut().expect("adopt needs a version");
                assert_eq!(v.0, *key_id);
                v.1 = Some(RotationTags {
                    key_id: *key_id,
                    previous_key_id: None,
                    phase: Phase::Retired,
                    rotated_at: None,
                    remove_after: None,
                    synced: vec![],
                });
            }
            Step::Rotate {
                previous_key_id,
                end,
                ..
            } => {
                self.next_key += 1;
                let k = Uuid::from_u128(self.next_key);
                self.passwords.push(PasswordInfo {
                    key_id: k,
                    display_name: Some(format!("{MARKER_PREFIX}{NAME}:{}", now.format("%Y-%m-%d"))),
                    hint: Some("xyz".into()),
                    start: Some(now),
                    end: Some(*end),
                });
                self.versions.push(VersionRecord {
                    key_id: Some(k),
                    created: Some(now),
                });
                self.vault = Some((
                    k,
                    Some(RotationTags {
                        key_id: k,
                        previous_key_id: *previous_key_id,
                        phase: Phase::Stored,
                        rotated_at: Some(now),
                        remove_after: None,
                        synced: vec![],
                    }),
                    Some(now),
                ));
            }
            Step::UpdateConsumer { index, consumer_id } | Step::Notify { index, consumer_id } => {
                assert!(!self.broken[*index], "wrote a blocked consumer");
                self.holds[*index] = self.vault.as_ref().map(|v| v.0);
                let t = self.tags_mut();
                if !t.synced.contains(consumer_id) {
                    t.synced.push(consumer_id.clone());
                }
            }
            Step::CompletePropagation { remove_after } => {
                let t = self.tags_mut();
                t.phase = Phase::Propagated;
                t.remove_after = Some(*remove_after);
            }
            Step::RemovePassword { key_id, .. } => {
                assert_ne!(
                    self.vault.as_ref().map(|v| v.0),
                    Some(*key_id),
                    "removed the stored password"
                );
                self.passwords.retain(|p| p.key_id != *key_id);
            }
            Step::MarkRetired => self.tags_mut().phase = Phase::Retired,
        }
    }
}

fn world(policy: CredentialPolicy) -> impl Strategy<Value = (CredentialPolicy, World)> {
    let n = policy.consumers.len();
    (
        Just(policy),
        passwords(),
        proptest::option::weighted(
            0.85,
            (
                0u8..7,
                proptest::option::of(raw_tags()),
                proptest::option::of(hours()),
            ),
        ),
        vec(proptest::option::of(0u8..7), n..=n),
        any::<bool>(),
    )
        .prop_map(|(policy, passwords, vault, holds, probes)| {
            let holds_len = holds.len();
            let vault = vault.map(|(k, tags, created)| {
                (
                    key(k),
                    tags.map(|t| tags_from(&t, &policy)),
                    created.map(at),
                )
            });
            let holds: Vec<Option<Uuid>> = holds.into_iter().map(|h| h.map(key)).collect();
            let versions = holds
                .iter()
                .flatten()
                .chain(vault.as_ref().map(|v| &v.0))
                .map(|k| VersionRecord {
                    key_id: Some(*k),
                    created: None,
                })
                .collect();
            let w = World {
                passwords,
                vault,
                versions,
                holds,
                probes,
                next_key: 0x5000,
                broken: vec![false; holds_len],
            };
            (policy, w)
        })
}

/// [`world`] with some consumers broken for good (ARM 403, a reference that never resolves).
fn world_with_broken(policy: CredentialPolicy) -> impl Strategy<Value = (CredentialPolicy, World)> {
    let n = policy.consumers.len();
    (world(policy), vec(any::<bool>(), n..=n)).prop_map(|((policy, mut w), broken)| {
        w.broken = broken;
        (policy, w)
    })
}

proptest! {
    #![proptest_config(config())]

    /// From any starting state, performing `steps[0]` and re-deciding settles within 50 steps
    /// with Key Vault holding a password that exists and has not expired.
    #[test]
    fn simulated_runs_converge(
        (policy, mut w) in valid_policy().prop_flat_map(world),
        now in hours().prop_map(at),
    ) {
        let mut trace: Vec<Step> = Vec::new();
        let mut settled = false;
        for _ in 0..50 {
            let obs = w.observe(&policy, now);
            let d = decide(&policy, &obs, now);
            check(&policy, &obs, now, &d);
            prop_assert!(d.blocked.is_none(), "blocked: {d:?}\ntrace: {trace:?}");
            match d.steps.first() {
                None => {
                    settled = true;
                    break;
                }
                Some(step) => {
                    w.apply(step, now);
                    trace.push(step.clone());
                }
            }
        }
        prop_assert!(settled, "no settled state after 50 steps: {trace:?}");
        let stored = w.vault.as_ref().map(|v| v.0);
        let pw = stored.and_then(|k| w.passwords.iter().find(|p| p.key_id == k));
        prop_assert!(pw.is_some(), "Key Vault holds no existing password: {w:?}\ntrace: {trace:?}");
        prop_assert!(
            pw.and_then(|p| p.end).is_none_or(|e| e > now),
            "Key Vault holds an expired password: {w:?}\ntrace: {trace:?}"
        );
        // Settled means every consumer holds the stored value when it can be observed.
        let obs = w.observe(&policy, now);
        let in_sync = obs
            .consumers
            .iter()
            .all(|c| !matches!(c.sync, ConsumerSync::OutOfSync { .. }));
        prop_assert!(in_sync, "a consumer is out of sync: {w:?}\ntrace: {trace:?}");
    }
}

/// Once healthy, the only reason to rotate is the renewal window: checks the steps of `trace`
/// from `from` on.
fn only_renewals(trace: &[Step], from: usize) -> Result<(), TestCaseError> {
    for s in &trace[from..] {
        if let Step::Rotate { reason, .. } = s {
            prop_assert!(
                matches!(reason, RotateReason::ExpiringSoon { .. }),
                "rotation for {reason:?} in steady state\ntrace: {trace:?}"
            );
        }
    }
    Ok(())
}

/// Years of operation: settle, check, jump the clock to `next_due` (the renewal date or the end
/// of a grace period), twelve times. Checked every time: once healthy (settled with the stored
/// value's password known from the rotator's own tags), the only rotations are renewals, and
/// the stored password exists and has not expired; then `check(world, decision, now, healthy,
/// trace)`.
fn run_years(
    policy: &CredentialPolicy,
    w: &mut World,
    start: DateTime<Utc>,
    mut check: impl FnMut(&World, &Decision, DateTime<Utc>, bool, &[Step]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut now = start;
    let mut trace = Vec::new();
    let mut healthy = false;
    for _ in 0..12 {
        let before = trace.len();
        let d = settle(policy, w, now, &mut trace)?;
        if healthy {
            only_renewals(&trace, before)?;
        }
        healthy = w.healthy();
        let stored = w.vault.as_ref().map(|v| v.0);
        prop_assert!(w.alive(stored, now), "{w:?}");
        check(w, &d, now, healthy, &trace)?;
        // None: the current password has no end date; nothing will ever fall due.
        let Some(next) = next_time(&d, now) else {
            break;
        };
        now = next;
    }
    Ok(())
}

/// Where the clock jumps after a settled decision: its due date (an hour on when that is not
/// ahead), or `None` when nothing will ever fall due.
fn next_time(d: &Decision, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match d.next_due {
        Some(due) if due > now => Some(due),
        Some(_) => Some(now + Duration::hours(1)),
        None => None,
    }
}

/// Runs decide/apply until a decision has no steps; returns it, or fails after 50 steps.
fn settle(
    policy: &CredentialPolicy,
    w: &mut World,
    now: DateTime<Utc>,
    trace: &mut Vec<Step>,
) -> Result<Decision, TestCaseError> {
    for _ in 0..50 {
        let obs = w.observe(policy, now);
        let d = decide(policy, &obs, now);
        check(policy, &obs, now, &d);
        prop_assert!(d.blocked.is_none(), "blocked: {d:?}\ntrace: {trace:?}");
        match d.steps.first() {
            None => return Ok(d),
            Some(step) => {
                w.apply(step, now);
                trace.push(step.clone());
            }
        }
    }
    Err(TestCaseError::fail(format!(
        "no settled state after 50 steps: {trace:?}"
    )))
}

proptest! {
    #![proptest_config(config())]

    /// Years of operation: settle, jump the clock to `next_due` (the renewal date or the end of
    /// a grace period), settle again. Every renewal happens before expiry, and the application
    /// never accumulates the rotator's passwords (at most the current and the previous one).
    #[test]
    fn lifecycle_over_years_stays_healthy(
        (policy, mut w) in valid_policy().prop_flat_map(world),
        start in hours().prop_map(at),
    ) {
        run_years(&policy, &mut w, start, |w, _, _, healthy, trace| {
            let ours = format!("{MARKER_PREFIX}{NAME}:");
            let marked = w
                .passwords
                .iter()
                .filter(|p| p.display_name.as_deref().is_some_and(|n| n.starts_with(&ours)))
                .count();
            prop_assert!(
                !healthy || marked <= 2,
                "{marked} rotator passwords piled up: {w:?}\ntrace: {trace:?}"
            );
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(config())]

    /// Partial progress over years: some consumers are broken for good. Settle, jump the clock
    /// to `next_due`, settle again. Every healthy observable consumer holds the stored value,
    /// a password that exists and has not expired; once healthy, every renewal starts
    /// inside the renewal window (never after expiry), whatever the broken consumers do; no
    /// password of the rotator's other than the current and previous one outlives its expiry.
    #[test]
    fn partial_progress_keeps_healthy_consumers_alive(
        (policy, mut w) in valid_policy().prop_flat_map(world_with_broken),
        start in hours().prop_map(at),
    ) {
        run_years(&policy, &mut w, start, |w, d, now, healthy, trace| {
            let stored = w.vault.as_ref().map(|v| v.0);
            // A settled state always says when the renewal falls due: a renewal date already
            // past with nothing to do would mean the renewal is held up.
            let ends = stored
                .and_then(|k| w.passwords.iter().find(|p| p.key_id == k))
                .and_then(|p| p.end)
                .is_some();
            prop_assert!(
                !healthy || !ends || d.next_due.is_some(),
                "settled without a due date: {d:?}\n{w:?}\ntrace: {trace:?}"
            );
            for (i, c) in policy.consumers.iter().enumerate() {
                let observable = matches!(
                    c,
                    Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. }
                );
                if w.broken[i] || !observable {
                    continue;
                }
                prop_assert!(
                    w.holds[i] == stored,
                    "healthy consumer #{i} is not on the stored value: {w:?}\ntrace: {trace:?}"
                );
            }
            // Each broken consumer is named as holding things up, at every settled point.
            prop_assert_eq!(
                d.held_up.len(),
                w.broken.iter().filter(|b| **b).count(),
                "{:?}",
                d
            );
            if healthy {
                let ours = format!("{MARKER_PREFIX}{NAME}:");
                let previous = w.vault.as_ref().and_then(|v| v.1.as_ref()).and_then(|t| t.previous_key_id);
                for p in &w.passwords {
                    let mine = p.display_name.as_deref().is_some_and(|n| n.starts_with(&ours));
                    if mine && Some(p.key_id) != stored && Some(p.key_id) != previous {
                        prop_assert!(
                            p.end.is_none_or(|e| e > now),
                            "password {} kept past its expiry: {w:?}\ntrace: {trace:?}",
                            p.key_id
                        );
                    }
                }
            }
            Ok(())
        })?;
    }
}
