//! The certificate planner: what to do next for one certificate credential, a pure function
//! of (policy, observation, now) like the secret planner beside it.
//!
//! - [`model`]: what it sees ([`CertObservation`]: the application's `keyCredentials`, the Key
//!   Vault certificate's versions and pending operation, the rotator's tags, consumers, the
//!   replaced secret's side of a conversion) and decides ([`CertDecision`], [`CertStep`]).
//! - `decide` (private, re-exported): [`decide`]; `decide/flow.rs` the rules once the
//!   certificate exists; `decide/conversion.rs` the secret's removal.
//! - `describe` (private, re-exported): [`describe_step`], one line per step for the plan.
//! - `tests`, `proptests`: one example per rule; property tests of the invariants below.
//!
//! This is the pure part; the engine's `engine::certificate` observes, performs the steps and
//! runs it beside the secret credentials.
//!
//! # Life cycle
//!
//! The executor performs `steps[0]` and observes again, until a decision has no steps:
//!
//! 1. No certificate → `RequestVersion{NotCreated}` (create from the policy). A pending
//!    operation → wait (look again after [`PENDING_POLL`]); a failed one → blocked, naming
//!    Key Vault's reason and the fix.
//! 2. A usable version newer than the current one (the rotator's request, or Key Vault's own
//!    auto-renewal: `AdoptVersion` first) → `AddKey` (addKey with a proof signed by the current
//!    key when that key is valid on the application and usable in Key Vault, else the
//!    merge-write keeping every key) → `Prove` (client assertion token request; tags the
//!    version current, phase `Stored`, previous = the old key). Graph's refusal of the key
//!    (key-credential limit, tenant lifetime or issuer policy), recorded by the executor for that
//!    version → blocked with the reason and the fix.
//! 3. `Stored` → `UpdateConsumer`/`Notify` per consumer not holding the version;
//!    `CompletePropagation` once all do. A consumer `Blocked`, or one that loads the PFX while
//!    Key Vault will not export the key, is only named in `held_up`.
//! 4. `Propagated` → after `remove_after`, `RemoveKey{Superseded}` of the previous key (only
//!    when the rotator added it) and `MarkRetired`.
//! 5. Renewal is due when the current version is disabled, expired, refused, or within
//!    `renewBefore` of its expiry → `RequestVersion`. A newer version waits while a rotation is
//!    still `Stored`/`Propagated`, unless renewal is due or the current key is gone.
//! 6. Enrolment: no tagged version, but a usable version the rotator did not make or adopt
//!    (origin unknown) whose key is already on the application → `AdoptCurrent` (phase
//!    `Retired`, no previous key: the rotator never removes it). A version it requested or
//!    adopted and whose key it put there is proven instead (step 2).
//! 7. Cleanup: the rotator's keys (displayName `secret-rotator:{name}:`) other than the
//!    current, previous and candidate ones: expired → removed; never taken up (no tagged
//!    version holds it) → removed; once consumers moved (`Propagated`/`Retired`) → removed.
//! 8. Conversion (`replacesSecret`): once the certificate is proven and every consumer of
//!    the secret is seen off it → `ReleaseSecret` (grace starts); after grace, still all moved
//!    → `RemoveClientSecret` per password and `MarkConverted`.
//!
//! # Guarantees (property tests)
//!
//! - Total: never panics on arbitrary observations and times; a blocked decision has no steps;
//!   a decision without steps has a `next_due` after `now`.
//! - Never `RemoveKey` of the key in use (the current version's, by keyId or thumbprint; with
//!   no current version, any version's), of a key the rotator did not add, nor of the
//!   application's only valid key.
//! - A merge-write keeps every key on the application except the one it removes.
//! - Never `RemoveClientSecret` unless every consumer of the secret was seen moved, the grace
//!   since that was recorded has passed, and the certificate is `Propagated`/`Retired`.

mod decide;
mod describe;
pub mod model;

pub use decide::{PENDING_POLL, RECHECK, decide};
pub use describe::describe_step;
pub use model::*;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
