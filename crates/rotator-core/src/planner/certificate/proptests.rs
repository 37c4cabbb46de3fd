//! Property tests of the certificate planner's guarantees (parent module, "Guarantees").
//!
//! Observations come from small pools of key ids and thumbprints so that tags, keys and
//! versions collide often: tags naming a missing key, a previous key equal to the current one,
//! keys of other credentials or of nobody, versions without dates, consumers observed under
//! the wrong ids. `simulated_runs_settle` applies each first step to a model of Azure, as the
//! executor does, and checks that the invariants hold on the model's state at every step.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

use super::tests::{id, policy, t0, tp};
use super::*;
use crate::planner::{ConsumerObservation, ConsumerSync, Phase};
use crate::policy::{ArmResource, CertificateConsumer, CertificateCredentialPolicy};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_130),
        ..ProptestConfig::with_cases(cases)
    }
}

fn at(hours: i64) -> DateTime<Utc> {
    t0() + Duration::hours(hours)
}

/// ±3 years around t0, in hours; sometimes absent.
fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop_oneof![1 => Just(None), 6 => (-26_000i64..26_000).prop_map(|h| Some(at(h)))]
}

fn marker() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("made by hand".to_string())),
        Just(Some("secret-rotator:pa-cert:2026-01-01".to_string())),
        Just(Some("secret-rotator:pa-cert-2:2026-01-01".to_string())),
    ]
}

fn keys() -> impl Strategy<Value = Vec<KeyCredentialInfo>> {
    vec(
        (0u8..6, prop::option::of(0u8..6), marker(), time(), time()),
        0..5,
    )
    .prop_map(|ks| {
        ks.into_iter()
            .map(|(k, t, display_name, start, end)| KeyCredentialInfo {
                key_id: id(k),
                thumbprint: t.map(tp),
                display_name,
                start,
                end,
            })
            .collect()
    })
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Stored),
        Just(Phase::Propagated),
        Just(Phase::Retired)
    ]
}

fn conversion_phase() -> impl Strategy<Value = Option<ConversionPhase>> {
    prop_oneof![
        Just(None),
        Just(Some(ConversionPhase::Converted)),
        time().prop_map(|t| t.map(|remove_after| ConversionPhase::SecretReleased { remove_after })),
    ]
}

fn rotation_tags() -> impl Strategy<Value = CertRotationTags> {
    (
        0u8..6,
        prop::option::of(0u8..6),
        phase(),
        time(),
        any::<bool>(),
        conversion_phase(),
    )
        .prop_map(|(k, p, phase, remove_after, synced, conversion)| {
            let synced = if synced {
                consumers().iter().map(|c| c.id()).collect()
            } else {
                Vec::new()
            };
            CertRotationTags {
                key_id: id(k),
                previous_key_id: p.map(id),
                phase,
                remove_after,
                synced,
                conversion,
            }
        })
}

fn origin() -> impl Strategy<Value = VersionOrigin> {
    prop_oneof![
        Just(VersionOrigin::Requested),
        Just(VersionOrigin::Adopted),
        Just(VersionOrigin::Unknown)
    ]
}

fn versions() -> impl Strategy<Value = Vec<CertVersion>> {
    vec(
        (
            0u8..6,
            time(),
            time(),
            time(),
            prop::bool::weighted(0.9),
            origin(),
            prop::option::of(rotation_tags()),
        ),
        0..4,
    )
    .prop_map(|vs| {
        vs.into_iter()
            .enumerate()
            .map(
                |(i, (t, created, not_before, expires, enabled, origin, tags))| CertVersion {
                    version: CertVersionId(format!("{i:032x}")),
                    thumbprint: tp(t),
                    created,
                    not_before,
                    expires,
                    enabled,
                    origin,
                    tags,
                },
            )
            .collect()
    })
}

fn consumers() -> Vec<CertificateConsumer> {
    let site = ArmResource {
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        resource_group: "rg".into(),
        name: "func-int".into(),
        slot: None,
    };
    vec![
        CertificateConsumer::AppSettingKeyVaultRef {
            site: site.clone(),
            setting: "ClientCertificate".into(),
        },
        CertificateConsumer::AppSettingThumbprint {
            site,
            setting: "WEBSITE_LOAD_CERTIFICATES".into(),
        },
        CertificateConsumer::NotifyOnly {
            system: "EzSign".into(),
            instructions: "upload the .cer".into(),
        },
    ]
}

fn sync() -> impl Strategy<Value = ConsumerSync> {
    prop_oneof![
        3 => Just(ConsumerSync::InSync),
        2 => Just(ConsumerSync::OutOfSync { detail: "old".into() }),
        1 => Just(ConsumerSync::NotObservable { healthy: None }),
        1 => Just(ConsumerSync::Blocked { reason: "403".into() }),
    ]
}

fn moved() -> impl Strategy<Value = SecretConsumerMove> {
    prop_oneof![
        4 => Just(SecretConsumerMove::Moved),
        1 => Just(SecretConsumerMove::StillOnSecret { detail: "x".into() }),
        1 => Just(SecretConsumerMove::Unknown { reason: "y".into() }),
    ]
}

fn pending() -> impl Strategy<Value = Option<PendingOperation>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(PendingOperation::InProgress { requested: None })),
        1 => Just(Some(PendingOperation::Failed { detail: "refused".into() })),
    ]
}

fn any_policy() -> impl Strategy<Value = CertificateCredentialPolicy> {
    (1u32..=24, 1i64..=60, 0i64..=20, any::<bool>()).prop_map(|(m, r, g, convert)| {
        let mut p = policy(consumers());
        p.validity_months = m;
        p.renew_before = Duration::days(r);
        p.grace = Duration::days(g);
        p.replaces_secret = convert.then(|| "pa".to_string());
        p
    })
}

fn observation() -> impl Strategy<Value = CertObservation> {
    let vault = prop_oneof![
        1 => Just(CertVaultState::Missing),
        1 => Just(CertVaultState::SoftDeleted { scheduled_purge: None }),
        8 => (versions(), pending(), prop::bool::weighted(0.8)).prop_map(|(versions, pending, exportable)| {
            CertVaultState::Present(CertificateState { versions, pending, exportable })
        }),
    ];
    let conversion = prop::option::of((vec(moved(), 0..3), vec(50u8..53, 0..3)).prop_map(
        |(m, p)| ConversionObservation {
            secret_consumers: m,
            secret_passwords: p.into_iter().map(id).collect(),
        },
    ));
    (
        prop_oneof![1 => Just(None), 12 => keys().prop_map(Some)],
        vault,
        prop::option::of(any::<bool>()),
        vec(sync(), 3),
        prop::option::of((0u8..4, any::<bool>())),
        conversion,
    )
        .prop_map(
            |(keys, vault, accepted, syncs, refused, conversion)| CertObservation {
                app: keys
                    .map(|keys| CertAppState {
                        object_id: id(201),
                        app_id: id(200),
                        keys,
                    })
                    .ok_or_else(|| "not visible".to_string()),
                vault,
                current_accepted: accepted,
                consumers: consumers()
                    .iter()
                    .zip(syncs)
                    .map(|(c, sync)| ConsumerObservation { id: c.id(), sync })
                    .collect(),
                add_refused: refused.map(|(v, limit)| AddRefusal {
                    version: CertVersionId(format!("{v:032x}")),
                    kind: if limit {
                        AddRefusalKind::KeyCredentialLimit
                    } else {
                        AddRefusalKind::LifetimePolicy
                    },
                    detail: "refused".into(),
                }),
                conversion,
            },
        )
}

/// The current version as the module docs define it: the newest tagged one.
fn current(cert: &CertificateState) -> Option<&CertVersion> {
    cert.versions
        .iter()
        .enumerate()
        .filter(|(_, v)| v.tags.is_some())
        .max_by_key(|(i, v)| (v.created, *i))
        .map(|(_, v)| v)
}

/// The guarantees, checked on one decision.
fn check(
    p: &CertificateCredentialPolicy,
    o: &CertObservation,
    now: DateTime<Utc>,
    d: &CertDecision,
) -> Result<(), TestCaseError> {
    if d.blocked.is_some() {
        prop_assert!(d.steps.is_empty() && d.next_due.is_none());
        return Ok(());
    }
    if d.steps.is_empty() {
        prop_assert!(
            d.next_due.is_some_and(|t| t > now),
            "next_due {:?}",
            d.next_due
        );
    }
    for s in &d.steps {
        check_step(p, o, now, s)?;
    }
    Ok(())
}

fn check_step(
    p: &CertificateCredentialPolicy,
    o: &CertObservation,
    now: DateTime<Utc>,
    s: &CertStep,
) -> Result<(), TestCaseError> {
    let app = o
        .app
        .as_ref()
        .map_err(|_| TestCaseError::fail("steps for an unreadable app"))?;
    let all: BTreeSet<Uuid> = app.keys.iter().map(|k| k.key_id).collect();
    match s {
        CertStep::RemoveKey { key_id, method, .. } => {
            let CertVaultState::Present(cert) = &o.vault else {
                return Err(TestCaseError::fail("RemoveKey without a certificate"));
            };
            let removed: Vec<&KeyCredentialInfo> =
                app.keys.iter().filter(|k| k.key_id == *key_id).collect();
            prop_assert!(!removed.is_empty(), "RemoveKey of a key not on the app");
            for k in removed {
                check_removed_key(cert, k, now)?;
            }
            let other_valid = app
                .keys
                .iter()
                .any(|o| o.key_id != *key_id && o.valid_at(now));
            prop_assert!(other_valid, "removes the only valid key");
            if let KeyWrite::MergeWrite { keep } = method {
                let kept: BTreeSet<Uuid> = keep.iter().copied().collect();
                let mut want = all.clone();
                want.remove(key_id);
                prop_assert_eq!(kept, want, "a merge-write drops a key it should keep");
            }
        }
        CertStep::AddKey {
            method: KeyWrite::MergeWrite { keep },
            ..
        } => {
            let kept: BTreeSet<Uuid> = keep.iter().copied().collect();
            prop_assert!(kept.is_superset(&all), "a merge-write drops a key");
        }
        CertStep::RemoveClientSecret { key_id, .. } => check_secret_removal(p, o, now, *key_id)?,
        CertStep::UpdateConsumer { index, consumer_id }
        | CertStep::Notify { index, consumer_id } => {
            prop_assert!(*index < p.consumers.len());
            prop_assert_eq!(&p.consumers[*index].id(), consumer_id);
            let notify = matches!(s, CertStep::Notify { .. });
            let notify_only = matches!(p.consumers[*index], CertificateConsumer::NotifyOnly { .. });
            prop_assert_eq!(notify, notify_only);
            let blocked = matches!(o.consumers[*index].sync, ConsumerSync::Blocked { .. });
            prop_assert!(!blocked, "a step for a blocked consumer");
        }
        _ => {}
    }
    Ok(())
}

/// One key a RemoveKey takes: the rotator's, and not the key in use.
fn check_removed_key(
    cert: &CertificateState,
    k: &KeyCredentialInfo,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let key_id = &k.key_id;
    let ours = k.display_name.as_deref() == Some("secret-rotator:pa-cert:2026-01-01");
    prop_assert!(ours, "removes a key the rotator did not add: {k:?}");
    match current(cert) {
        Some(v) => {
            let t = v.tags.as_ref().unwrap();
            prop_assert!(*key_id != t.key_id, "removes the current key id");
            prop_assert!(
                k.thumbprint != Some(v.thumbprint),
                "removes the current key"
            );
        }
        None => prop_assert!(
            !cert
                .versions
                .iter()
                .any(|v| k.thumbprint == Some(v.thumbprint)),
            "removes a key some version holds while none is current"
        ),
    }
    // While Stored, consumers may still hold the previous key: only its expiry lets it go.
    if let Some(t) = current(cert).and_then(|v| v.tags.as_ref())
        && t.phase == Phase::Stored
        && t.previous_key_id == Some(*key_id)
    {
        prop_assert!(
            k.end.is_some_and(|e| e <= now),
            "removes the previous key while Stored"
        );
    }
    Ok(())
}

/// A password of the replaced secret goes only when every consumer moved, the grace recorded
/// when that was seen has passed, and the certificate is on every consumer.
fn check_secret_removal(
    p: &CertificateCredentialPolicy,
    o: &CertObservation,
    now: DateTime<Utc>,
    key_id: Uuid,
) -> Result<(), TestCaseError> {
    prop_assert!(p.replaces_secret.is_some());
    let c = o
        .conversion
        .as_ref()
        .ok_or_else(|| TestCaseError::fail("no conversion seen"))?;
    prop_assert!(
        c.secret_consumers
            .iter()
            .all(|m| *m == SecretConsumerMove::Moved)
    );
    prop_assert!(c.secret_passwords.contains(&key_id));
    let CertVaultState::Present(cert) = &o.vault else {
        return Err(TestCaseError::fail("secret removed without a certificate"));
    };
    let t = current(cert).and_then(|v| v.tags.as_ref());
    let t = t.ok_or_else(|| TestCaseError::fail("secret removed without a current version"))?;
    prop_assert!(
        t.phase != Phase::Stored,
        "secret removed before the certificate propagated"
    );
    prop_assert!(
        matches!(t.conversion, Some(ConversionPhase::SecretReleased { remove_after }) if remove_after <= now),
        "secret removed before its grace: {:?}",
        t.conversion
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_decision_keeps_the_guarantees(
        p in any_policy(),
        o in observation(),
        now in (-26_000i64..26_000).prop_map(at),
    ) {
        let d = decide(&p, &o, now);
        check(&p, &o, now, &d)?;
        prop_assert_eq!(&d, &decide(&p, &o, now), "not deterministic");
    }
}

/// A model of Azure for one certificate credential: the application's keys, the vault's
/// versions, what each consumer holds, and the replaced secret's passwords.
#[derive(Debug, Clone)]
struct World {
    keys: Vec<KeyCredentialInfo>,
    versions: Vec<CertVersion>,
    pending: bool,
    /// The version each consumer holds.
    held: Vec<Option<CertVersionId>>,
    /// Consumers broken for good (observed `Blocked`).
    broken: Vec<bool>,
    passwords: Vec<Uuid>,
    next: u16,
}

impl World {
    fn current(&self) -> Option<&CertVersion> {
        let cert = CertificateState {
            versions: self.versions.clone(),
            pending: None,
            exportable: true,
        };
        current(&cert).and_then(|c| self.versions.iter().find(|v| v.version == c.version))
    }

    fn observe(&self, p: &CertificateCredentialPolicy) -> CertObservation {
        let cur = self.current().map(|v| v.version.clone());
        let consumers = p
            .consumers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let sync = if self.broken[i] {
                    ConsumerSync::Blocked {
                        reason: "gone".into(),
                    }
                } else if self.held[i] == cur {
                    ConsumerSync::InSync
                } else {
                    ConsumerSync::OutOfSync {
                        detail: "old".into(),
                    }
                };
                ConsumerObservation { id: c.id(), sync }
            })
            .collect();
        CertObservation {
            app: Ok(CertAppState {
                object_id: id(201),
                app_id: id(200),
                keys: self.keys.clone(),
            }),
            vault: CertVaultState::Present(CertificateState {
                versions: self.versions.clone(),
                pending: self
                    .pending
                    .then_some(PendingOperation::InProgress { requested: None }),
                exportable: true,
            }),
            current_accepted: None,
            consumers,
            add_refused: None,
            conversion: p.replaces_secret.as_ref().map(|_| ConversionObservation {
                secret_consumers: vec![SecretConsumerMove::Moved],
                secret_passwords: self.passwords.clone(),
            }),
        }
    }

    /// Key Vault issues a requested version `at`.
    fn issue(&mut self, p: &CertificateCredentialPolicy, at: DateTime<Utc>) {
        self.pending = false;
        self.next += 1;
        let months = chrono::Months::new(p.validity_months);
        self.versions.push(CertVersion {
            version: CertVersionId(format!("v{:030}", self.next)),
            thumbprint: {
                let mut t = [0xee; 20];
                t[..2].copy_from_slice(&self.next.to_be_bytes());
                Thumbprint(t)
            },
            created: Some(at),
            not_before: Some(at),
            expires: at.checked_add_months(months),
            enabled: true,
            origin: VersionOrigin::Requested,
            tags: None,
        });
    }

    fn tags_mut(&mut self) -> Option<&mut CertRotationTags> {
        let v = self.current()?.version.clone();
        self.versions
            .iter_mut()
            .find(|x| x.version == v)?
            .tags
            .as_mut()
    }

    fn apply(&mut self, p: &CertificateCredentialPolicy, step: &CertStep, now: DateTime<Utc>) {
        let version =
            |w: &World, v: &CertVersionId| w.versions.iter().position(|x| &x.version == v);
        match step {
            CertStep::RequestVersion { .. } => self.pending = true,
            CertStep::AdoptVersion { version: v } => {
                if let Some(i) = version(self, v) {
                    self.versions[i].origin = VersionOrigin::Adopted;
                }
            }
            CertStep::AdoptCurrent { version: v, key_id } => {
                if let Some(i) = version(self, v) {
                    self.versions[i].tags = Some(CertRotationTags {
                        key_id: *key_id,
                        previous_key_id: None,
                        phase: Phase::Retired,
                        remove_after: None,
                        synced: Vec::new(),
                        conversion: None,
                    });
                }
            }
            CertStep::AddKey { version: v, .. } => {
                if let Some(i) = version(self, v) {
                    let x = &self.versions[i];
                    self.keys.push(KeyCredentialInfo {
                        key_id: Uuid::from_u128(
                            0x9_0000 + u128::from(self.next) * 256 + self.keys.len() as u128,
                        ),
                        thumbprint: Some(x.thumbprint),
                        display_name: Some("secret-rotator:pa-cert:2026-01-01".into()),
                        start: x.not_before,
                        end: x.expires,
                    });
                }
            }
            CertStep::Prove {
                version: v,
                key_id,
                previous_key_id,
            } => {
                let conversion = self.tags_mut().and_then(|t| t.conversion);
                if let Some(i) = version(self, v) {
                    self.versions[i].tags = Some(CertRotationTags {
                        key_id: *key_id,
                        previous_key_id: *previous_key_id,
                        phase: Phase::Stored,
                        remove_after: None,
                        synced: Vec::new(),
                        conversion,
                    });
                }
            }
            CertStep::UpdateConsumer { index, .. } | CertStep::Notify { index, .. } => {
                self.held[*index] = self.current().map(|v| v.version.clone());
            }
            CertStep::CompletePropagation { remove_after } => {
                if let Some(t) = self.tags_mut() {
                    t.phase = Phase::Propagated;
                    t.remove_after = Some(*remove_after);
                }
            }
            CertStep::RemoveKey { key_id, .. } => self.keys.retain(|k| k.key_id != *key_id),
            CertStep::MarkRetired => {
                if let Some(t) = self.tags_mut() {
                    t.phase = Phase::Retired;
                }
            }
            CertStep::ReleaseSecret { remove_after } => {
                if let Some(t) = self.tags_mut() {
                    t.conversion = Some(ConversionPhase::SecretReleased {
                        remove_after: *remove_after,
                    });
                }
            }
            CertStep::RemoveClientSecret { key_id, .. } => self.passwords.retain(|k| k != key_id),
            CertStep::MarkConverted => {
                if let Some(t) = self.tags_mut() {
                    t.conversion = Some(ConversionPhase::Converted);
                }
            }
        }
        let _ = (p, now);
    }

    /// Never the outage, on the model's state: every healthy consumer that holds a version
    /// holds one whose key is on the application.
    fn check(&self) -> Result<(), TestCaseError> {
        for (i, held) in self.held.iter().enumerate() {
            let Some(v) = held else { continue };
            let Some(x) = self.versions.iter().find(|x| &x.version == v) else {
                continue;
            };
            let on_app = self.keys.iter().any(|k| k.thumbprint == Some(x.thumbprint));
            prop_assert!(
                on_app,
                "consumer #{i} holds version {v} whose key was removed"
            );
        }
        Ok(())
    }
}

/// Runs decisions to a settled point (no steps), applying each first step; Key Vault issues a
/// requested version at the next look.
fn settle(
    p: &CertificateCredentialPolicy,
    w: &mut World,
    now: DateTime<Utc>,
    trace: &mut Vec<CertStep>,
) -> Result<CertDecision, TestCaseError> {
    for _ in 0..60 {
        let o = w.observe(p);
        let d = decide(p, &o, now);
        check(p, &o, now, &d)?;
        w.check()?;
        if let Some(why) = &d.blocked {
            return Err(TestCaseError::fail(format!("blocked: {why}")));
        }
        let Some(step) = d.steps.first() else {
            if w.pending {
                w.issue(p, now);
                continue;
            }
            return Ok(d);
        };
        w.apply(p, step, now);
        trace.push(step.clone());
    }
    Err(TestCaseError::fail(format!(
        "no settled point after 60 steps: {:?}",
        &trace[trace.len().saturating_sub(8)..]
    )))
}

fn world() -> impl Strategy<Value = (CertificateCredentialPolicy, World)> {
    (
        any_policy(),
        vec(prop::bool::weighted(0.15), 3),
        any::<bool>(),
    )
        .prop_map(|(mut p, broken, hand_key)| {
            // Valid as the parser checks it: renewal within 27 days a month, grace shorter than
            // what is left of the shortest validity.
            let months = i64::from(p.validity_months);
            p.renew_before = p.renew_before.min(Duration::days(months * 27));
            let room = p.min_lifetime() - p.renew_before - Duration::days(1);
            p.grace = p.grace.min(room).max(Duration::zero());
            let mut w = World {
                keys: Vec::new(),
                versions: Vec::new(),
                pending: false,
                held: vec![None; 3],
                broken,
                passwords: vec![id(50), id(51)],
                next: 0,
            };
            if hand_key {
                // Enrolled as people left it: a version and its key on the app, consumers on it.
                w.issue(&p, at(-24 * 30));
                let v = w.versions[0].clone();
                w.versions[0].origin = VersionOrigin::Unknown;
                w.keys.push(KeyCredentialInfo {
                    key_id: id(3),
                    thumbprint: Some(v.thumbprint),
                    display_name: Some("by hand".into()),
                    start: v.not_before,
                    end: v.expires,
                });
                w.held = vec![Some(v.version); 3];
            }
            (p, w)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..config() })]

    /// From an empty or hand-made start, over three years of jumping the clock to `next_due`:
    /// no consumer ever holds a version whose key is gone; once settled, the current version is
    /// unexpired and at most two of the rotator's keys remain past grace.
    #[test]
    fn simulated_runs_settle((p, mut w) in world()) {
        let mut now = at(0);
        let mut trace = Vec::new();
        let end = at(24 * 365 * 3);
        let mut rounds = 0;
        while now < end && rounds < 400 {
            rounds += 1;
            let d = settle(&p, &mut w, now, &mut trace)?;
            let cur = w.current().cloned();
            let cur = cur.ok_or_else(|| TestCaseError::fail("settled without a current version"))?;
            prop_assert!(cur.expires.is_some_and(|e| e > now), "settled on an expired version at {now}");
            let tags = cur.tags.clone().ok_or_else(|| TestCaseError::fail("untagged current"))?;
            let ours: Vec<&KeyCredentialInfo> = w.keys.iter().filter(|k| k.display_name.as_deref() == Some("secret-rotator:pa-cert:2026-01-01")).collect();
            if w.broken.iter().any(|b| *b) {
                // A broken consumer holds the rotation in `Stored`: older keys stay for it, but
                // none of the rotator's outlives its expiry but the current and previous.
                for k in &ours {
                    let kept = k.key_id == tags.key_id || Some(k.key_id) == tags.previous_key_id;
                    prop_assert!(kept || k.end.is_none_or(|e| e > now), "expired key {} kept", k.key_id);
                }
            } else {
                prop_assert!(ours.len() <= 3, "{} of the rotator's keys at a settled point", ours.len());
            }
            let next = d.next_due.ok_or_else(|| TestCaseError::fail("settled without next_due"))?;
            prop_assert!(next > now);
            now = next;
        }
        if p.replaces_secret.is_some() && !w.broken.iter().any(|b| *b) {
            prop_assert!(w.passwords.is_empty(), "the converted secret was never removed");
        }
    }
}
