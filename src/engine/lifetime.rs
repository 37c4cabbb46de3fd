//! A tenant's cap on password lifetimes, learnt from Graph's refusals and remembered in the
//! rotator's storage (`lifetime-caps/{credential}.json`, [`crate::engine::records`]).
//!
//! An app management policy can cap client-secret lifetimes; addPassword with a longer one gets
//! 400 `CredentialInvalidLifetimeAsPerAppPolicy`, whose message names the policy but not the
//! cap (and reading the policy needs `Policy.Read.All`, which the rotator does not hold). So
//! the rotator remembers the shortest lifetime refused and tries the next shorter step of
//! [`LADDER`]; once one is accepted it is remembered too. `plan` and every run then plan with
//! the remembered lifetime instead of proposing the refused one again.
//!
//! Caveat: a cap raised later is not noticed; delete the record to try the policy's own
//! lifetime again.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::ports::StorePorts;
use crate::engine::records::{self, RecordPath};
use crate::policy::CredentialPolicy;

/// The lifetimes tried below a refused one, longest first (common tenant caps).
const LADDER: [i64; 8] = [365, 180, 90, 60, 30, 14, 7, 1];

/// What the rotator knows of the tenant's cap for one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownCap {
    /// The shortest lifetime Graph refused, in days.
    pub refused_days: i64,
    /// The longest lifetime accepted since then (shorter than `refused_days`), in days.
    pub accepted_days: Option<i64>,
    pub refused_at: DateTime<Utc>,
}

fn path(cred: &CredentialPolicy) -> RecordPath<'_> {
    RecordPath::LifetimeCap {
        credential: &cred.name,
    }
}

/// The remembered cap; `None` when there is none or it cannot be read (then the policy's own
/// lifetime is tried, and a refusal is learnt again).
pub async fn load(store: &dyn StorePorts, cred: &CredentialPolicy) -> Option<KnownCap> {
    records::read(store, &path(cred), "lifetime cap")
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("the tenant's lifetime cap is unknown: {e}");
            None
        })
}

async fn save(store: &dyn StorePorts, cred: &CredentialPolicy, cap: &KnownCap) {
    if let Err(e) = records::write(store, &path(cred), cap).await {
        tracing::warn!("could not record the tenant's lifetime cap: {e}");
    }
}

/// The credential as the planner should see it: its lifetime lowered below a known refusal.
/// `Err`: no lifetime longer than the renewal window is left to try (a person must act).
pub fn apply(
    cred: &CredentialPolicy,
    cap: Option<&KnownCap>,
) -> Result<(CredentialPolicy, Option<String>), String> {
    let days = cred.lifetime.num_days();
    let Some(cap) = cap.filter(|c| days >= c.refused_days) else {
        return Ok((cred.clone(), None));
    };
    let renew = cred.renew_before.num_days();
    let next = cap
        .accepted_days
        .filter(|a| *a < cap.refused_days)
        .or_else(|| LADDER.into_iter().find(|d| *d < cap.refused_days))
        .filter(|d| *d > renew)
        .ok_or_else(|| {
            format!(
                "the tenant's app management policy refused a {}-day password lifetime for {} on {}, and no \
                 lifetime longer than the {renew}-day renewal window is left to try: lower renewBeforeDays and \
                 lifetimeDays under the tenant's cap (ask the tenant admin; Graph: policies/defaultAppManagementPolicy)",
                cap.refused_days,
                cred.name,
                cap.refused_at.format("%Y-%m-%d")
            )
        })?;
    let mut capped = cred.clone();
    capped.lifetime = Duration::days(next);
    let note = format!(
        "The tenant's app management policy refused a {}-day lifetime on {}: new passwords last {next} days \
         (the policy asks {days}; set lifetimeDays to at most {next} to say so).",
        cap.refused_days,
        cap.refused_at.format("%Y-%m-%d")
    );
    Ok((capped, Some(note)))
}

/// Records that Graph refused `used` (the lifetime just asked for).
pub async fn refused(
    store: &dyn StorePorts,
    cred: &CredentialPolicy,
    used: Duration,
    now: DateTime<Utc>,
) -> KnownCap {
    let cap = KnownCap {
        refused_days: used.num_days(),
        accepted_days: None,
        refused_at: now,
    };
    save(store, cred, &cap).await;
    cap
}

/// Records that Graph accepted `used` while a cap is known (so the next rotation asks it again).
pub async fn accepted(
    store: &dyn StorePorts,
    cred: &CredentialPolicy,
    cap: KnownCap,
    used: Duration,
) {
    let days = used.num_days();
    if days < cap.refused_days && cap.accepted_days != Some(days) {
        let cap = KnownCap {
            accepted_days: Some(days),
            ..cap
        };
        save(store, cred, &cap).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(lifetime: i64, renew: i64) -> CredentialPolicy {
        let text = format!(
            r#"{{"credentials":[{{"name":"c","application":{{"appId":"7412f649-8e14-471f-bfc1-733b36a42705"}},
            "keyVault":{{"vault":"kv1","secret":"s"}},"lifetimeDays":{lifetime},"renewBeforeDays":{renew},"graceDays":1}}]}}"#
        );
        crate::policy::parse("p.json", &text)
            .unwrap()
            .credentials
            .remove(0)
    }

    fn cap(refused: i64, accepted: Option<i64>) -> KnownCap {
        KnownCap {
            refused_days: refused,
            accepted_days: accepted,
            refused_at: DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
                .unwrap()
                .to_utc(),
        }
    }

    #[test]
    fn a_refused_lifetime_is_never_proposed_again() {
        let c = cred(180, 30);
        assert_eq!(apply(&c, None).unwrap().0.lifetime, Duration::days(180));
        let (capped, note) = apply(&c, Some(&cap(180, None))).unwrap();
        assert_eq!(capped.lifetime, Duration::days(90));
        assert!(note.unwrap().contains("refused a 180-day lifetime"));
        assert_eq!(
            apply(&c, Some(&cap(180, Some(120)))).unwrap().0.lifetime,
            Duration::days(120)
        );
        // A policy already under the refused lifetime is left alone.
        assert_eq!(
            apply(&cred(60, 30), Some(&cap(90, None)))
                .unwrap()
                .0
                .lifetime,
            Duration::days(60)
        );
        // Nothing left above the renewal window: a person decides.
        let err = apply(&cred(60, 30), Some(&cap(31, None))).unwrap_err();
        assert!(err.contains("renewBeforeDays"), "{err}");
    }
}
