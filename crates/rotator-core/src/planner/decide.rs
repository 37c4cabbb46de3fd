//! [`decide`]: the planner's rules (documented in the parent module), and [`describe_step`].
//!
//! Written as one pass that appends steps in rule order to a [`Builder`], with an explanation
//! sentence for every step and for every notable thing left alone. All date arithmetic is
//! checked: an overflow blocks the decision instead of panicking.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::model::*;
use crate::policy::{Consumer, ConsumerId, CredentialPolicy};

/// Decides what to do next for one credential. Pure and total: see the module docs for the
/// rules and their guarantees.
pub fn decide(policy: &CredentialPolicy, obs: &Observation, now: DateTime<Utc>) -> Decision {
    let mut b = Builder::new(policy, now);
    b.run(obs);
    b.finish()
}

/// An on-demand rotation (`Rotate` with `force`): what [`decide`] would do, except that when it
/// would not rotate, the decision becomes its orphan removals followed by `Rotate{Forced}`.
/// Blocked decisions stay blocked. The previous password is the current one, or while `Stored`
/// the version's previous (the one consumers still hold); `None` when it cannot be told.
pub fn decide_forced(policy: &CredentialPolicy, obs: &Observation, now: DateTime<Utc>) -> Decision {
    let mut d = decide(policy, obs, now);
    if d.blocked.is_some() || d.steps.iter().any(|s| matches!(s, Step::Rotate { .. })) {
        return d;
    }
    let previous = match &obs.vault {
        VaultState::Missing | VaultState::SoftDeleted { .. } => None,
        VaultState::Current(v) => {
            let b = Builder::new(policy, now);
            let cur = b.resolve(v);
            if cur.phase == Phase::Stored {
                cur.previous
            } else {
                cur.key
            }
        }
    };
    let Some(end) = now.checked_add_signed(policy.lifetime) else {
        d.steps.clear();
        d.next_due = None;
        d.blocked = Some("the new password's end date is out of range".into());
        return d;
    };
    d.steps.retain(|s| {
        matches!(
            s,
            Step::RemovePassword {
                reason: RemoveReason::Orphan,
                ..
            }
        )
    });
    d.steps.push(Step::Rotate {
        reason: RotateReason::Forced,
        previous_key_id: previous,
        end,
    });
    d.next_due = None;
    d.explanation
        .push("A rotation was asked for explicitly: rotate now.".to_string());
    d
}

/// The steps of `steps` (a decision's, in its order) the executor may perform together, as
/// one batch, before deciding again: `steps[0]` alone, unless it is an `UpdateConsumer`; then
/// every `UpdateConsumer` of the consumer steps that lead the decision whose consumer writes a
/// resource no earlier one in the batch writes ([`Consumer::written_resource`]). Those are
/// independent: each writes its own resource the current Key Vault version, which is what the
/// decision was made against, and none depends on another's outcome. The ones left out (a
/// second consumer on a site already in the batch, a `Notify`, which records itself in Key
/// Vault at once) come again in the next decision if still needed.
pub fn first_batch(policy: &CredentialPolicy, steps: &[Step]) -> Vec<Step> {
    let Some(first) = steps.first() else {
        return Vec::new();
    };
    if !matches!(first, Step::UpdateConsumer { .. }) {
        return vec![first.clone()];
    }
    let mut resources = Vec::new();
    let mut batch = Vec::new();
    for step in steps {
        let index = match step {
            Step::UpdateConsumer { index, .. } => *index,
            Step::Notify { .. } => continue,
            _ => break,
        };
        let resource = policy
            .consumers
            .get(index)
            .and_then(Consumer::written_resource);
        match resource {
            Some(r) if !resources.contains(&r) => resources.push(r),
            // Unknown to the policy: performed alone, where the executor refuses it.
            None if batch.is_empty() => {
                batch.push(step.clone());
                break;
            }
            _ => continue,
        }
        batch.push(step.clone());
    }
    batch
}

/// One line for CLI and log output, e.g. `remove password 3f2a… (orphan of a crashed run)`.
pub fn describe_step(step: &Step) -> String {
    match step {
        Step::Adopt { key_id } => format!(
            "adopt the current Key Vault version as password {key_id} (record the rotator's tags)"
        ),
        Step::Rotate {
            reason,
            previous_key_id,
            end,
        } => {
            let replacing = match previous_key_id {
                Some(p) => format!(", replacing password {p}"),
                None => String::new(),
            };
            format!(
                "rotate ({}): add a password valid until {}, verify it and store it in Key Vault{replacing}",
                describe_reason(reason),
                end.format("%Y-%m-%d %H:%M UTC")
            )
        }
        Step::UpdateConsumer { index, consumer_id } => {
            format!(
                "update consumer #{index} ({consumer_id}) to the current version and confirm it"
            )
        }
        Step::Notify { index, consumer_id } => format!(
            "notify consumer #{index} ({consumer_id}): send the manual step for the new value"
        ),
        Step::CompletePropagation { remove_after } => format!(
            "confirm the stored value gets a token and mark the rotation propagated (previous password removable after {})",
            remove_after.format("%Y-%m-%d %H:%M UTC")
        ),
        Step::RemovePassword { key_id, reason } => {
            let why = match reason {
                RemoveReason::Superseded => "superseded, grace period over",
                RemoveReason::Orphan => "orphan of a run that crashed before storing it",
                RemoveReason::ExpiredUnmanaged => "expired, not created by secret-rotator",
            };
            format!("remove password {key_id} ({why})")
        }
        Step::MarkRetired => "mark the rotation retired (previous password gone)".to_string(),
    }
}

fn describe_reason(r: &RotateReason) -> String {
    match r {
        RotateReason::NotStored => "not stored in Key Vault yet".into(),
        RotateReason::CurrentPasswordMissing => {
            "current password missing from the application".into()
        }
        RotateReason::ExpiringSoon { expires } => format!("expires {}", day(*expires)),
        RotateReason::Expired { expired } => format!("expired {}", day(*expired)),
        RotateReason::CurrentValueRefused => "Entra refuses the stored value".into(),
        RotateReason::UnknownCurrentPassword { reason } => {
            format!("current password unknown: {reason}")
        }
        RotateReason::Forced => "forced".into(),
    }
}

/// Whether the Key Vault version list shows that password `p` was never stored: no version's
/// tags name it, and every version without readable rotator tags was written before `p`
/// existed (so cannot hold its value). `false` when it cannot be told (list not read, `p`'s
/// start unknown, a version's date unknown).
///
/// Why this and not a time bound: while `Stored`, a password of the rotator's older than the
/// current version may be one consumers still hold (a renewal while a consumer held the
/// rotation up, a rotation away from an unidentifiable value), so it is kept until the rotation
/// has propagated. But a run that crashed between addPassword and storing leaves a password
/// nobody holds, and the next run cannot see it when Graph's read lags (Entra: reads right after
/// a write may not reflect it), so its first-rotation cleanup (rule 3) misses it; kept "for
/// consumers", it would outlive the rotation while a consumer stays broken. Key Vault, not
/// timing, says which values ever reached consumers.
fn never_stored(obs: &Observation, p: &PasswordInfo) -> bool {
    let (Some(versions), Some(start)) = (&obs.versions, p.start) else {
        return false;
    };
    versions.iter().all(|v| match v.key_id {
        Some(k) => k != p.key_id,
        // `created` has whole seconds: a version from the same second might be later.
        None => v
            .created
            .and_then(|c| c.checked_add_signed(Duration::seconds(1)))
            .is_some_and(|c| c <= start),
    })
}

/// `3f2a…`: enough to recognise a password in the portal's list.
fn short(k: Uuid) -> String {
    let s = k.simple().to_string();
    format!("{}…", &s[..4])
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// "in 9 days", "today", "3 days ago".
fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let days = t.signed_duration_since(now).num_days();
    match days {
        0 if t >= now => "today".to_string(),
        0 => "earlier today".to_string(),
        1 => "1 day".to_string(),
        -1 => "1 day ago".to_string(),
        d if d > 0 => format!("{d} days"),
        d => format!("{} days ago", d.unsigned_abs()),
    }
}

fn whole_days(d: Duration) -> i64 {
    d.num_days()
}

fn pw_label(p: &PasswordInfo) -> String {
    match &p.display_name {
        Some(n) if !n.is_empty() => format!("{} ('{n}')", short(p.key_id)),
        _ => short(p.key_id),
    }
}

struct Builder<'a> {
    policy: &'a CredentialPolicy,
    now: DateTime<Utc>,
    steps: Vec<Step>,
    explanation: Vec<String>,
    blocked: Option<String>,
    next_due: Option<DateTime<Utc>>,
    held_up: Vec<String>,
}

/// A rule 7 trigger: why to rotate, whether it is urgent (cannot wait for a grace period), and
/// the sentence that says so.
type Trigger = (RotateReason, bool, String);

/// The previous password's timing, once a rotation has settled (rule 6).
struct PreviousTiming {
    /// When it may go: `remove_after`, else rotated_at + grace, else now.
    remove_after: DateTime<Utc>,
    /// Its end date has passed.
    expired: bool,
    /// It may go now: expired, past its grace period, or the rotation is finished.
    due: bool,
}

/// The current version, reduced to what the rules need.
struct Current<'o> {
    /// The password the stored value is, when known (Tagged/Inferred and consistent with tags).
    key: Option<Uuid>,
    /// Why it is not known.
    unknown: Option<String>,
    /// The password the executor matched by hint, even when the tags disagree (protected from
    /// removal either way).
    hint_key: Option<Uuid>,
    /// Tags as recorded, or the adoption defaults (phase Retired, no previous).
    phase: Phase,
    tag_key: Option<Uuid>,
    previous: Option<Uuid>,
    remove_after: Option<DateTime<Utc>>,
    rotated_at: Option<DateTime<Utc>>,
    synced: &'o [ConsumerId],
    created: Option<DateTime<Utc>>,
    adopt: bool,
}

impl<'a> Builder<'a> {
    fn new(policy: &'a CredentialPolicy, now: DateTime<Utc>) -> Self {
        Builder {
            policy,
            now,
            steps: Vec::new(),
            explanation: Vec::new(),
            blocked: None,
            next_due: None,
            held_up: Vec::new(),
        }
    }

    fn finish(self) -> Decision {
        let blocked = self.blocked;
        Decision {
            steps: if blocked.is_some() {
                Vec::new()
            } else {
                self.steps
            },
            next_due: if blocked.is_some() {
                None
            } else {
                self.next_due
            },
            blocked,
            explanation: self.explanation,
            held_up: self.held_up,
        }
    }

    fn say(&mut self, s: String) {
        self.explanation.push(s);
    }

    fn block(&mut self, reason: String) {
        self.explanation.push(format!("Blocked: {reason}."));
        self.blocked = Some(reason);
    }

    fn secret(&self) -> &'a str {
        &self.policy.key_vault.secret
    }

    fn is_ours(&self, p: &PasswordInfo) -> bool {
        p.display_name
            .as_deref()
            .is_some_and(|n| PasswordMarker::is_for(n, &self.policy.name))
    }

    fn run(&mut self, obs: &Observation) {
        let app = match &obs.app {
            Ok(app) => app,
            Err(reason) => {
                self.block(format!(
                    "the application for {} cannot be read: {reason}",
                    self.policy.name
                ));
                return;
            }
        };
        if !self.sane_inputs(obs) {
            return;
        }
        match &obs.vault {
            VaultState::Missing => self.not_stored(app),
            VaultState::SoftDeleted {
                deleted,
                scheduled_purge,
            } => self.soft_deleted(*deleted, *scheduled_purge),
            VaultState::Current(v) => self.current(app, obs, v),
        }
    }

    /// Rule 1's extra blocks: inputs a valid policy and a correct executor never produce, but
    /// which would otherwise make the plan loop or index out of range.
    fn sane_inputs(&mut self, obs: &Observation) -> bool {
        let p = self.policy;
        if p.lifetime <= Duration::zero() || p.renew_before >= p.lifetime {
            self.block(format!(
                "the policy's lifetime ({} days) must be positive and longer than its renewal window ({} days)",
                whole_days(p.lifetime),
                whole_days(p.renew_before)
            ));
            return false;
        }
        if obs.consumers.len() != p.consumers.len() {
            self.block(format!(
                "the observation has {} consumers but the policy lists {}",
                obs.consumers.len(),
                p.consumers.len()
            ));
            return false;
        }
        for (i, (c, o)) in p.consumers.iter().zip(&obs.consumers).enumerate() {
            if c.id() != o.id {
                self.block(format!(
                    "consumer #{i} was observed as {} but the policy's is {} ({})",
                    o.id,
                    c.id(),
                    c.describe()
                ));
                return false;
            }
        }
        true
    }

    /// Rules 2, 8 and 3 when the Key Vault secret does not exist.
    fn not_stored(&mut self, app: &AppState) {
        for p in &app.passwords {
            if self.is_ours(p) {
                self.say(format!(
                    "Password {} was created by a run that stopped before storing it in Key Vault: nobody can hold its value; remove it.",
                    pw_label(p)
                ));
                self.steps.push(Step::RemovePassword {
                    key_id: p.key_id,
                    reason: RemoveReason::Orphan,
                });
            }
        }
        self.unmanaged(app, &[]);
        self.say(format!(
            "Key Vault secret {}/{} does not exist yet: create a password and store it (first rotation).",
            self.policy.key_vault.vault,
            self.secret()
        ));
        self.rotate(RotateReason::NotStored, None);
    }

    /// A soft-deleted secret's name cannot be reused (Key Vault answers 409
    /// `ObjectIsDeletedButRecoverable`): a person decides between recovering and purging it.
    fn soft_deleted(&mut self, deleted: Option<DateTime<Utc>>, purge: Option<DateTime<Utc>>) {
        let kv = &self.policy.key_vault;
        let (v, s) = (&kv.vault, &kv.secret);
        let when =
            |t: Option<DateTime<Utc>>| t.map(day).unwrap_or_else(|| "an unknown date".into());
        self.block(format!(
            "Key Vault secret {v}/{s} is soft-deleted (deleted {}, purged by Key Vault on {}): its name \
             cannot be reused until it is recovered or purged. Recover it to keep its versions \
             (az keyvault secret recover --vault-name {v} --name {s}), or purge it to start afresh \
             (az keyvault secret purge --vault-name {v} --name {s}); the next run then carries on",
            when(deleted),
            when(purge)
        ));
    }

    fn current(&mut self, app: &AppState, obs: &Observation, v: &VaultVersion) {
        let cur = self.resolve(v);
        let find = |k: Option<Uuid>| k.and_then(|k| app.passwords.iter().find(|p| p.key_id == k));
        let current_pw = find(cur.key);
        let previous_pw = find(cur.previous);
        let protected: Vec<Uuid> = [cur.key, cur.hint_key, cur.tag_key, cur.previous]
            .into_iter()
            .flatten()
            .collect();

        // Rule 2: orphans.
        self.orphans(app, obs, &cur, &protected);
        // The previous password is not protected from rule 8: once expired it authenticates
        // nobody, and one the rotator did not create is only ever removed by that rule.
        let in_use: Vec<Uuid> = [cur.key, cur.hint_key, cur.tag_key]
            .into_iter()
            .flatten()
            .collect();
        // Rule 8 runs early too: removing expired passwords nobody can use is always safe.
        if cur.unknown.is_none() {
            self.unmanaged(app, &in_use);
        }
        // Rule 4: adoption.
        if cur.adopt
            && let Some(k) = cur.key
        {
            self.say(format!(
                "{} carries no rotator tags; its value matches password {} by hint: adopt it.",
                self.secret(),
                short(k)
            ));
            self.steps.push(Step::Adopt { key_id: k });
        }

        // Why the current password needs replacing, in rule 7's order; `urgent` ones override
        // the wait for the previous password's grace period.
        let hint_pw = find(cur.hint_key);
        let reason = self.rotate_reason(obs, &cur, current_pw, hint_pw);

        match cur.phase {
            Phase::Stored => self.stored(obs, &cur, reason),
            Phase::Propagated | Phase::Retired => {
                self.settled(obs, &cur, current_pw, previous_pw, reason)
            }
        }
    }

    fn resolve<'o>(&self, v: &'o VaultVersion) -> Current<'o> {
        let (mut key, mut unknown) = match &v.identity {
            KeyIdentity::Tagged(k) | KeyIdentity::InferredFromHint(k) => (Some(*k), None),
            KeyIdentity::Unknown { reason } => (None, Some(reason.clone())),
        };
        let hint_key = key;
        if let (Some(k), Some(t)) = (key, &v.tags)
            && t.key_id != k
        {
            unknown = Some(format!(
                "the tags name password {} but the value matches {}",
                short(t.key_id),
                short(k)
            ));
            key = None;
        }
        match &v.tags {
            Some(t) => Current {
                key,
                unknown,
                hint_key,
                phase: t.phase,
                tag_key: Some(t.key_id),
                // A previous equal to the current password would make it removable: ignore it.
                previous: t
                    .previous_key_id
                    .filter(|p| Some(*p) != key && *p != t.key_id),
                remove_after: t.remove_after,
                rotated_at: t.rotated_at,
                synced: &t.synced,
                created: v.created,
                adopt: false,
            },
            None => Current {
                adopt: key.is_some(),
                key,
                unknown,
                hint_key,
                phase: Phase::Retired,
                tag_key: None,
                previous: None,
                remove_after: None,
                rotated_at: None,
                synced: &[],
                created: v.created,
            },
        }
    }

    fn orphans(
        &mut self,
        app: &AppState,
        obs: &Observation,
        cur: &Current<'_>,
        protected: &[Uuid],
    ) {
        for p in &app.passwords {
            if !self.is_ours(p) || protected.contains(&p.key_id) {
                continue;
            }
            if let Some(why) = &cur.unknown {
                self.say(format!(
                    "Password {} is one of ours but is not removed while the current password is unknown ({why}).",
                    pw_label(p)
                ));
                continue;
            }
            let newer_than_version = matches!((p.start, cur.created), (Some(s), Some(c)) if s > c);
            let expired = p.end.is_some_and(|e| e <= self.now);
            let never_stored = never_stored(obs, p);
            if cur.phase == Phase::Stored && !newer_than_version && !expired && !never_stored {
                self.say(format!(
                    "Password {} predates the current version and consumers may still hold it: it is removed once the rotation has propagated.",
                    pw_label(p)
                ));
                continue;
            }
            let why = if newer_than_version {
                "it was created by a run that stopped before storing it, so nobody can hold its value"
            } else if never_stored && cur.phase == Phase::Stored {
                "no Key Vault version names it, so it was created by a run that stopped before storing it and nobody can hold its value"
            } else {
                "it predates the rotation before this one (replaced early, e.g. by a forced rotation), and every consumer has moved on"
            };
            self.say(format!(
                "Password {} is marked for {} but is neither the current nor the previous password: {why}; remove it.",
                pw_label(p),
                self.policy.name
            ));
            self.steps.push(Step::RemovePassword {
                key_id: p.key_id,
                reason: RemoveReason::Orphan,
            });
        }
    }

    /// Rule 8.
    fn unmanaged(&mut self, app: &AppState, protected: &[Uuid]) {
        for p in &app.passwords {
            let marked = p
                .display_name
                .as_deref()
                .is_some_and(PasswordMarker::is_rotators);
            if marked || protected.contains(&p.key_id) {
                continue;
            }
            let Some(end) = p.end else { continue };
            if end > self.now {
                continue;
            }
            if self.policy.remove_unmanaged_expired {
                self.say(format!(
                    "Password {} was not created by secret-rotator and expired on {}: remove it (removeUnmanagedExpired is set).",
                    pw_label(p),
                    day(end)
                ));
                self.steps.push(Step::RemovePassword {
                    key_id: p.key_id,
                    reason: RemoveReason::ExpiredUnmanaged,
                });
            } else {
                self.say(format!(
                    "Password {} was not created by secret-rotator and expired on {}; it is left in place (set removeUnmanagedExpired to remove such passwords).",
                    pw_label(p),
                    day(end)
                ));
            }
        }
    }

    /// Rule 7's triggers: (reason, urgent, sentence), in order: the current password gone, the
    /// current password unknown, its value refused, then its age.
    fn rotate_reason(
        &self,
        obs: &Observation,
        cur: &Current<'_>,
        current_pw: Option<&PasswordInfo>,
        hint_pw: Option<&PasswordInfo>,
    ) -> Option<Trigger> {
        if let Some(k) = cur.key
            && current_pw.is_none()
        {
            return self.current_password_missing(obs, k);
        }
        if let Some(why) = &cur.unknown {
            return Some(self.unknown_current_password(obs, cur, hint_pw, why));
        }
        if obs.current_value_accepted == Some(false) {
            return Some((
                RotateReason::CurrentValueRefused,
                true,
                format!("Entra refuses the value now in {}: rotate.", self.secret()),
            ));
        }
        self.age_reason(cur, current_pw?)
    }

    /// The version names a password the application no longer lists.
    fn current_password_missing(&self, obs: &Observation, key: Uuid) -> Option<Trigger> {
        // Graph is eventually consistent: a password added moments ago may not be listed
        // yet. Entra accepting the stored value shows it exists.
        if obs.current_value_accepted == Some(true) {
            return None;
        }
        Some((
            RotateReason::CurrentPasswordMissing,
            true,
            format!(
                "{}'s password {} is no longer on the application: consumers are failing; rotate.",
                self.secret(),
                short(key)
            ),
        ))
    }

    /// It cannot be told which password the version holds.
    fn unknown_current_password(
        &self,
        obs: &Observation,
        cur: &Current<'_>,
        hint_pw: Option<&PasswordInfo>,
        why: &str,
    ) -> Trigger {
        // Urgent unless the value is shown to work: nothing else says it still does.
        let hint_alive = match (cur.hint_key, hint_pw) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(p)) => p.end.is_none_or(|e| e > self.now),
        };
        let works = obs.current_value_accepted == Some(true) && hint_alive;
        (
            RotateReason::UnknownCurrentPassword {
                reason: why.to_string(),
            },
            !works,
            format!(
                "It cannot be told which password {} holds ({why}): rotate to one the rotator knows.",
                self.secret()
            ),
        )
    }

    /// The current password expired or inside its renewal window.
    fn age_reason(&self, cur: &Current<'_>, pw: &PasswordInfo) -> Option<Trigger> {
        let secret = self.secret();
        // A password without an end date never needs renewing.
        let end = pw.end?;
        if end <= self.now {
            return Some((
                RotateReason::Expired { expired: end },
                true,
                format!(
                    "{secret}'s password {} expired on {} ({}): consumers get AADSTS7000222; rotate now.",
                    short(pw.key_id),
                    day(end),
                    relative(self.now, end)
                ),
            ));
        }
        let renew_at = end.checked_sub_signed(self.policy.renew_before)?;
        if renew_at > self.now {
            return None;
        }
        // Waiting for a previous password's grace period is fine unless that wait outlasts
        // the current password: then the rotation cannot wait (found by the lifecycle
        // property test with a grace end years ahead).
        let urgent = self.grace_end(cur).is_some_and(|g| g >= end);
        Some((
            RotateReason::ExpiringSoon { expires: end },
            urgent,
            format!(
                "{secret}'s password {} expires {} ({}), inside the {}-day renewal window: rotate.",
                short(pw.key_id),
                day(end),
                relative(self.now, end),
                whole_days(self.policy.renew_before)
            ),
        ))
    }

    /// When the previous password's grace period ends: `remove_after`, else rotated_at + grace.
    fn grace_end(&self, cur: &Current<'_>) -> Option<DateTime<Utc>> {
        cur.remove_after.or_else(|| {
            cur.rotated_at
                .and_then(|r| r.checked_add_signed(self.policy.grace))
        })
    }

    /// Rule 5.
    fn stored(&mut self, obs: &Observation, cur: &Current<'_>, reason: Option<Trigger>) {
        let since = cur
            .rotated_at
            .map(|t| format!(" since {}", day(t)))
            .unwrap_or_default();
        self.say(format!(
            "A rotation of {} is in progress{since}: the new value{} is stored and is being carried to its consumers.",
            self.secret(),
            cur.key.map(|k| format!(" (password {})", short(k))).unwrap_or_default()
        ));
        if let Some((reason, urgent, sentence)) = reason {
            // The rotation in progress reached its own renewal window (a consumer held it up
            // that long): renew on time whatever the other consumers do. Consumers on the
            // current password keep it as the previous one; older ones keep theirs until it
            // expires (rule 2).
            if let (RotateReason::ExpiringSoon { .. }, Some(k)) = (&reason, cur.key) {
                self.say(format!(
                    "{sentence} The rotation in progress has not reached every consumer by its renewal date: renew anyway; password {} stays as the previous one for the consumers that hold it.",
                    short(k)
                ));
                self.rotate(reason, Some(k));
                return;
            }
            // An unidentifiable value that demonstrably works (so not urgent) is propagated
            // rather than thrown away.
            let unknown_but_works = matches!(reason, RotateReason::UnknownCurrentPassword { .. });
            if urgent {
                self.say(format!(
                    "{sentence} The rotation in progress is abandoned; consumers keep the previous password meanwhile."
                ));
                self.rotate(reason, cur.previous);
                return;
            }
            if unknown_but_works {
                self.say(format!(
                    "The value in {} cannot be matched to a password but gets a token: carry on propagating it.",
                    self.secret()
                ));
            }
        }
        let (steps, held) = self.consumer_steps(obs, cur, true);
        if steps + held == 0 {
            match self.now.checked_add_signed(self.policy.grace) {
                Some(remove_after) => {
                    self.say(format!(
                        "Every consumer holds the new value of {}: confirm it gets a token and start the {}-day grace period (previous password removed after {}).",
                        self.secret(),
                        whole_days(self.policy.grace),
                        day(remove_after)
                    ));
                    self.steps.push(Step::CompletePropagation { remove_after });
                }
                None => self.block("the end of the grace period is out of range".into()),
            }
        } else if self.steps.is_empty() {
            self.held_until_renewal(cur, obs);
        }
    }

    /// Rule 5's rest: only blocked consumers are left. Nothing to do until they are fixed or
    /// the current password's renewal date (rule 7 renews then, whatever they do).
    fn held_until_renewal(&mut self, cur: &Current<'_>, obs: &Observation) {
        let app_pw = obs.app.as_ref().ok().and_then(|a| {
            cur.key
                .and_then(|k| a.passwords.iter().find(|p| p.key_id == k))
        });
        let renewal = app_pw
            .and_then(|p| p.end)
            .and_then(|e| e.checked_sub_signed(self.policy.renew_before))
            .filter(|r| *r > self.now);
        if let Some(r) = renewal {
            self.say(format!(
                "The rotation waits for the consumers above; the renewal falls due {} whatever they do.",
                day(r)
            ));
        }
        self.next_due = renewal;
    }

    /// Consumer steps: in `Stored`, every consumer not known to hold the version; otherwise only
    /// those observed to hold something else (drift). Blocked consumers get no step, only a
    /// `held_up` sentence. Returns (steps added, consumers held up).
    fn consumer_steps(
        &mut self,
        obs: &Observation,
        cur: &Current<'_>,
        stored: bool,
    ) -> (usize, usize) {
        let mut n = 0;
        let mut held = 0;
        for (index, (c, o)) in self.policy.consumers.iter().zip(&obs.consumers).enumerate() {
            let notify = matches!(c, Consumer::NotifyOnly { .. });
            let synced = cur.synced.contains(&o.id);
            let why = match &o.sync {
                ConsumerSync::Blocked { reason } => {
                    self.hold(index, c, reason, stored && !synced);
                    held += usize::from(stored && !synced);
                    None
                }
                ConsumerSync::InSync => None,
                ConsumerSync::OutOfSync { detail } => {
                    Some(format!("it holds something else: {detail}"))
                }
                ConsumerSync::NotObservable { .. } if stored && !synced => {
                    Some("it cannot be read back and is not recorded as updated".to_string())
                }
                ConsumerSync::NotObservable { healthy } => {
                    if *healthy == Some(false) {
                        self.say(format!(
                            "{} reports unhealthy although it is recorded as updated: check it by hand.",
                            c.describe()
                        ));
                    }
                    None
                }
            };
            let Some(why) = why else { continue };
            let consumer_id = o.id.clone();
            if notify {
                self.say(format!(
                    "{} has not been told about this version of {} yet: send a person the instructions.",
                    c.describe(),
                    self.secret()
                ));
                self.steps.push(Step::Notify { index, consumer_id });
            } else {
                let verb = if stored {
                    "update it"
                } else {
                    "repair the drift"
                };
                self.say(format!(
                    "{} does not hold the current version of {} ({why}): {verb}.",
                    c.describe(),
                    self.secret()
                ));
                self.steps.push(Step::UpdateConsumer { index, consumer_id });
            }
            n += 1;
        }
        (n, held)
    }

    /// A blocked consumer: said, and listed in `held_up` (the executor's reason says what to do).
    fn hold(&mut self, index: usize, c: &Consumer, reason: &str, holds_rotation: bool) {
        let effect = if holds_rotation {
            "the rotation cannot finish until it is fixed; every other consumer still moves and the renewal stays on time"
        } else {
            "it cannot be checked for drift until it is fixed"
        };
        let sentence = format!("consumer #{index} {} is blocked: {reason}", c.describe());
        self.say(format!("{sentence}; {effect}."));
        self.held_up.push(sentence);
    }

    /// Rules 6, 7 and 9 for `Propagated` and `Retired` (adopted versions count as `Retired`),
    /// in order: the last rotation's housekeeping, a due rotation (unless the housekeeping or
    /// the grace period holds it back), drift repairs, and else the next due date.
    fn settled(
        &mut self,
        obs: &Observation,
        cur: &Current<'_>,
        current_pw: Option<&PasswordInfo>,
        previous_pw: Option<&PasswordInfo>,
        reason: Option<Trigger>,
    ) {
        let prev = self.previous_timing(cur, previous_pw);
        let housekeeping = self.housekeeping(cur, previous_pw, &prev);
        let waiting = cur.phase == Phase::Propagated && previous_pw.is_some() && !prev.due;
        if let Some(trigger) = reason
            && self.rotate_unless_held(cur, trigger, housekeeping.is_empty(), waiting, &prev)
        {
            return;
        }

        let (drift, _) = self.consumer_steps(obs, cur, false);
        let busy = drift > 0 || !housekeeping.is_empty();
        for (step, sentence) in housekeeping {
            self.say(sentence);
            self.steps.push(step);
        }
        if busy {
            return;
        }

        // Rule 9: no rotation due.
        let idle = self.steps.is_empty();
        let mut due = self.say_no_rotation_due(current_pw, idle);
        if waiting && let Some(p) = previous_pw {
            due = self.wait_for_grace(p, &prev, due);
        }
        // Only a decision without steps has a due date (rule 9); after cleanup or adoption
        // steps the next decision carries it.
        if idle {
            self.next_due = due;
        }
    }

    /// Whether the previous password may go, and since when.
    fn previous_timing(
        &self,
        cur: &Current<'_>,
        previous_pw: Option<&PasswordInfo>,
    ) -> PreviousTiming {
        let now = self.now;
        // When the previous password may go: remove_after, else rotated_at + grace, else now.
        let remove_after = self.grace_end(cur).unwrap_or(now);
        let expired = previous_pw.and_then(|p| p.end).is_some_and(|e| e <= now);
        PreviousTiming {
            remove_after,
            expired,
            due: expired || now >= remove_after || cur.phase == Phase::Retired,
        }
    }

    /// Housekeeping left from the last rotation (rule 6): steps with their sentences, said only
    /// when they are taken. A previous password kept is said at once.
    fn housekeeping(
        &mut self,
        cur: &Current<'_>,
        previous_pw: Option<&PasswordInfo>,
        prev: &PreviousTiming,
    ) -> Vec<(Step, String)> {
        let known = cur.key.is_some();
        let mut housekeeping: Vec<(Step, String)> = Vec::new();
        match (cur.phase, previous_pw) {
            (Phase::Propagated, None) => housekeeping.push((
                Step::MarkRetired,
                "The previous password is gone: mark the rotation finished.".into(),
            )),
            (phase, Some(p)) if prev.due && known && self.is_ours(p) => {
                housekeeping.push(self.remove_superseded(phase, p, prev));
                if phase == Phase::Propagated {
                    housekeeping.push((
                        Step::MarkRetired,
                        "Then mark the rotation finished.".into(),
                    ));
                }
            }
            // A previous password the rotator did not create (an adopted one) is never removed
            // as superseded: something outside the policy may still use it. It is let go.
            (phase, Some(p)) if prev.due && known => {
                let sentence = format!(
                    "Previous password {} was not created by secret-rotator: it is left in place{}.",
                    pw_label(p),
                    match p.end {
                        Some(e) if e > self.now => format!(" (it expires {})", day(e)),
                        _ => String::new(),
                    }
                );
                if phase == Phase::Propagated {
                    housekeeping.push((
                        Step::MarkRetired,
                        format!("{sentence} Mark the rotation finished."),
                    ));
                } else {
                    self.say(sentence);
                }
            }
            (_, Some(p)) if prev.due => self.say(format!(
                "Previous password {} is kept: the current password is unknown, so it might be the one in use.",
                pw_label(p)
            )),
            _ => {}
        }
        housekeeping
    }

    /// Removing the rotator's own previous password, with why it may go now.
    fn remove_superseded(
        &self,
        phase: Phase,
        p: &PasswordInfo,
        prev: &PreviousTiming,
    ) -> (Step, String) {
        let why = if prev.expired {
            format!("has expired ({})", day(p.end.unwrap_or(self.now)))
        } else if phase == Phase::Retired {
            "is still on the application although the rotation is finished".to_string()
        } else {
            format!(
                "is past its grace period (since {})",
                day(prev.remove_after)
            )
        };
        (
            Step::RemovePassword {
                key_id: p.key_id,
                reason: RemoveReason::Superseded,
            },
            format!("Previous password {} {why}: remove it.", pw_label(p)),
        )
    }

    /// Rule 7 once settled: rotates now unless housekeeping comes first or the grace period
    /// holds a non-urgent rotation back; a deferred rotation is said so the operator sees it
    /// coming. Returns whether it rotated.
    fn rotate_unless_held(
        &mut self,
        cur: &Current<'_>,
        (reason, urgent, sentence): Trigger,
        no_housekeeping: bool,
        waiting: bool,
        prev: &PreviousTiming,
    ) -> bool {
        if no_housekeeping && (!waiting || urgent) {
            self.say(sentence);
            if waiting {
                self.say(
                    "The previous password's grace period is cut short: the current one cannot be used."
                        .into(),
                );
            }
            self.rotate(reason, cur.key);
            return true;
        }
        // Deferred: said so the operator sees it coming.
        if no_housekeeping {
            self.say(format!(
                "{sentence} It waits until the previous password's grace period ends ({}).",
                day(prev.remove_after)
            ));
        } else {
            self.say(format!(
                "{sentence} It follows once the previous rotation is finished."
            ));
        }
        false
    }

    /// Says when the current password expires and its renewal falls due; returns that date.
    fn say_no_rotation_due(
        &mut self,
        current_pw: Option<&PasswordInfo>,
        idle: bool,
    ) -> Option<DateTime<Utc>> {
        let end = current_pw.and_then(|p| p.end);
        let renewal = end.and_then(|e| e.checked_sub_signed(self.policy.renew_before));
        let tail = if idle {
            "nothing to do"
        } else {
            "no rotation needed"
        };
        match (end, renewal) {
            (Some(end), Some(r)) => self.say(format!(
                "{}'s password {} expires {} ({}); renewal is due {}: {tail}.",
                self.secret(),
                current_pw.map(|p| short(p.key_id)).unwrap_or_default(),
                day(end),
                relative(self.now, end),
                day(r)
            )),
            _ => self.say(format!(
                "{}'s current password has no end date: {tail}.",
                self.secret()
            )),
        }
        renewal
    }

    /// The previous password's grace period still runs: says what happens when it ends and
    /// returns the next due date given the renewal date `due`.
    fn wait_for_grace(
        &mut self,
        p: &PasswordInfo,
        prev: &PreviousTiming,
        due: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let then = if self.is_ours(p) {
            "then it is removed".to_string()
        } else {
            match p.end {
                Some(e) => format!(
                    "it was not created by secret-rotator, so it then stays until it expires ({})",
                    day(e)
                ),
                None => "it was not created by secret-rotator, so it then stays".to_string(),
            }
        };
        self.say(format!(
            "Previous password {} is kept until {} (grace period) so consumers can pick up the new value; {then}.",
            pw_label(p),
            day(prev.remove_after)
        ));
        // A renewal date already past is held up by this wait: the wait's end is next.
        Some(match due {
            Some(r) if r > self.now => r.min(prev.remove_after),
            _ => prev.remove_after,
        })
    }

    fn rotate(&mut self, reason: RotateReason, previous_key_id: Option<Uuid>) {
        match self.now.checked_add_signed(self.policy.lifetime) {
            Some(end) => self.steps.push(Step::Rotate {
                reason,
                previous_key_id,
                end,
            }),
            None => self.block("the new password's end date is out of range".into()),
        }
    }
}
