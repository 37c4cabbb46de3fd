//! The rotation planner: a pure function of (policy, observed state, now).
//!
//! - [`model`]: what the planner sees ([`Observation`]) and decides ([`Decision`], [`Step`]).
//! - `decide` (private, re-exported): [`decide`], [`decide_forced`] (on-demand rotation) and
//!   [`describe_step`], the rules below.
//! - [`certificate`]: the same for certificate credentials (its own observation, steps and
//!   rules; the engine runs it in `engine::certificate`).
//! - `tests`, `proptests`: one example per field runbook situation, and property tests that
//!   simulate whole runs from arbitrary (including adversarial) starting states.
//!
//! # Expected flow
//!
//! The executor observes one credential, calls [`decide`], performs only `steps[0]` and observes
//! again, until a decision has no steps. A normal life cycle is:
//!
//! 1. Key Vault secret missing → `Rotate{NotStored}`: addPassword, verify, store (phase `Stored`).
//! 2. `Stored` → one `UpdateConsumer`/`Notify` per consumer not yet holding the version, then
//!    `CompletePropagation` (phase `Propagated`, `remove_after` = now + grace).
//! 3. `Propagated` → nothing until `remove_after` (or until the previous password expires), then
//!    `RemovePassword{Superseded}` and `MarkRetired` (phase `Retired`).
//! 4. `Retired` → nothing until `end - renewBefore`, then `Rotate{ExpiringSoon}` and back to 2.
//!
//! The rules, in the order they are applied:
//!
//! 1. The application cannot be read → blocked with that reason, no steps. So is an observation
//!    whose consumers do not line up with the policy's, or a policy whose durations cannot work
//!    (lifetime not positive, renewal window not shorter than the lifetime).
//! 2. Orphans: passwords marked `secret-rotator:{name}:` that are neither the current nor the
//!    previous password → `RemovePassword{Orphan}`, first. They come from a run that crashed
//!    between addPassword and storing the value, so nobody can hold them.
//! 3. Key Vault secret missing → `Rotate{NotStored, previous: None}` (the observation then
//!    lists every consumer as out of sync, unread: they are read once the secret exists).
//!    Soft-deleted → blocked, naming the recover/purge choice (Key Vault refuses the name).
//! 4. A current version without tags whose value matches one password by hint → `Adopt`, then
//!    the remaining rules as if tagged `Retired` with no previous password.
//! 5. Phase `Stored`: each consumer not in sync (observed `OutOfSync`, or not observable and not
//!    in `tags.synced`) → `UpdateConsumer` (`Notify` for notify-only ones); all in sync →
//!    `CompletePropagation`. A consumer observed `Blocked` (cannot be read or written) gets no
//!    step: it is named in `held_up` with its reason, every other consumer still moves, and the
//!    rotation waits for it (no `CompletePropagation`; `next_due` = the renewal date). No new
//!    rotation while `Stored` unless the stored value is refused, its password is missing or
//!    expired, or cannot be identified (and was not shown to work) — or the stored password has
//!    reached its own renewal window (a consumer held the rotation up that long): then
//!    `Rotate{ExpiringSoon}` with the stored password as the previous one, whatever the other
//!    consumers do.
//! 6. Phases `Propagated`/`Retired`: consumers observed `OutOfSync` → `UpdateConsumer` (drift
//!    repair); `Blocked` ones are only named in `held_up`. `Propagated`: the previous password past `remove_after` (or expired) →
//!    `RemovePassword{Superseded}` then `MarkRetired`; already gone → `MarkRetired`. A previous
//!    password the rotator did not create (adopted) is never removed as superseded: it is let
//!    go with `MarkRetired` and left to rule 8. `Retired` with the rotator's previous password
//!    still present → `RemovePassword{Superseded}`.
//! 7. Rotation is due when the current password is missing, unidentifiable, refused, expired, or
//!    within `renewBefore` of its end. It waits while the previous password still has grace
//!    left, unless the current one is missing, refused or expired (an unidentifiable value
//!    counts as refused unless a token request with it succeeded). `Rotate.end` = now + lifetime.
//! 8. Passwords without the `secret-rotator:` marker, other than the current one: removed only
//!    when expired and the policy sets `removeUnmanagedExpired`; otherwise only mentioned. (An
//!    expired previous password authenticates nobody, so it is not protected here.) These
//!    removals come right after the orphans.
//! 9. Nothing to do → no steps; `next_due` = the renewal date, or the end of the grace period
//!    when that comes first or the renewal is already held up by it. Always in the future.
//!
//! # Guarantees
//!
//! Checked by the property tests over arbitrary policies, observations and times:
//! - `decide` is total (never panics; all date arithmetic is checked) and deterministic.
//! - Never a `RemovePassword` for the current password, nor for a password the rotator did not
//!   create unless it has expired and the policy allows it.
//! - Never `Rotate` together with a consumer update in one decision (a rotation re-propagates).
//! - `Rotate.end - now == lifetime`.
//! - Performing `steps[0]` and deciding again reaches, from any starting state and within 50
//!   steps, a decision with no steps in which Key Vault holds a password that exists and has
//!   not expired, and no observable consumer is out of sync.
//! - Jumping the clock to `next_due` and settling again, for years: once healthy, rotations only
//!   happen for `ExpiringSoon` (never after expiry), and at most two of the rotator's passwords
//!   (current and previous) exist at any settled point.
//! - Partial progress: a `Blocked` consumer never gets a step and is named in `held_up`. With
//!   some consumers broken for good, over years: every healthy observable consumer holds the
//!   stored value, a password that exists and has not expired; once healthy, every renewal
//!   starts inside the renewal window (`ExpiringSoon`, never after expiry) and a settled point
//!   always has a due date; no password of the rotator's other than the current and previous
//!   one outlives its expiry.
//!
//! # Caveats
//!
//! - While `Stored`, a marked password that started before the current version was written is not
//!   treated as an orphan: after a rotation away from an unidentifiable value, or a renewal while
//!   a consumer held the rotation up, consumers may still hold it. It is removed once the version
//!   is `Propagated` (without a grace period), or once it has expired (it authenticates nobody) —
//!   or at once when Key Vault's version list (`Observation::versions`) shows no version ever
//!   held it: a run that crashed before storing it, whose password Graph's read lag hid from the
//!   next run's cleanup (fault campaign seeds 9500079/9500142).
//! - A consumer `Blocked` for longer than a lifetime keeps whatever it held: the planner cannot
//!   reach it, so it may hold an expired value; the rest of the credential stays healthy and
//!   `held_up` says what to fix. While `Stored`, the rotator's older passwords are kept for it
//!   until they expire, so a consumer fixed in time finds its value still working.
//! - When the current password cannot be identified, nothing is removed (not even expired
//!   unmanaged passwords): any password might be the one in use. The rotation that follows
//!   makes it known again, and cleanup resumes.
//! - A rotation started because the stored value is refused/missing/expired while `Stored`
//!   keeps the version's `previous_key_id` (the password consumers still hold) as its previous.
//! - Passwords marked for *another* credential (`secret-rotator:{other}:`) are never touched.
//! - The planner trusts the observation: consumer sync state, hints and tags are the executor's
//!   findings. It never sees secret values.

pub mod certificate;
mod decide;
pub mod model;

pub use decide::{decide, decide_forced, describe_step};
pub use model::*;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
