//! Azure Resource Manager's and Key Vault's request throttling, as documented (Graph's write
//! quota lives in `graph::count_write`). Off unless the scenario asks (`throttling`): tests that
//! are not about throttling keep their request counts exact; the bench and the fault campaign
//! turn it on.
//!
//! Azure Resource Manager — "Understand how Azure Resource Manager throttles requests"
//! (https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling,
//! "Regional throttling and token bucket algorithm"): since 2024 a token bucket per region;
//! subscription scope: reads bucket 250, refill 25/s; deletes 200, 10/s; writes 200, 10/s;
//! "Subscription limits apply per subscription, per service principal, and per operation
//! type"; the same figures apply to tenant-scope requests. Reads are GET; every other method
//! is a write except DELETE ("x-ms-ratelimit-remaining-subscription-reads for GET requests and
//! x-ms-ratelimit-remaining-subscription-writes response headers for non-GET requests",
//! https://learn.microsoft.com/troubleshoot/azure/virtual-machines/troubleshooting-throttling-errors).
//! Each answer carries the bucket's remaining tokens in `x-ms-ratelimit-remaining-subscription-
//! {reads,writes,deletes}` (`-tenant-` for tenant requests); a throttled one is 429 with
//! `Retry-After` (seconds until a token is back). The emulator serves one region.
//!
//! Key Vault — "Azure Key Vault service limits"
//! (https://learn.microsoft.com/azure/key-vault/general/service-limits): "Secrets, managed
//! storage account keys, and vault transactions", maximum transactions allowed in 10 seconds
//! per vault per region: 4,000. Throttled: 429 with Retry-After; "Failed requests that return a
//! 429 do not count towards the throttle limits tracked by Key Vault"
//! (https://learn.microsoft.com/azure/key-vault/general/overview-throttling). Modelled as a
//! sliding 10-second window per vault; requests without credentials (the authentication
//! challenge) are not counted.

use std::collections::{HashMap, VecDeque};

use axum::http;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The scenario's `throttling`: `"documented"` (the figures above), or each service's limits
/// (`null` for none).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ThrottlingChoice {
    Named(Named),
    Custom(ThrottlingSpec),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Named {
    Documented,
}

impl ThrottlingChoice {
    pub fn spec(self) -> ThrottlingSpec {
        match self {
            ThrottlingChoice::Named(Named::Documented) => ThrottlingSpec::documented(),
            ThrottlingChoice::Custom(s) => s,
        }
    }
}

/// Each service's limits, or `null` for none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottlingSpec {
    pub arm: Option<ArmLimits>,
    pub key_vault: Option<WindowLimit>,
}

impl ThrottlingSpec {
    /// The documented figures (module docs).
    pub fn documented() -> Self {
        Self {
            arm: Some(ArmLimits::documented()),
            key_vault: Some(WindowLimit {
                requests: 4000,
                window_seconds: 10,
            }),
        }
    }
}

/// One token bucket: `bucket` tokens at most, `refill_per_second` back each second.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bucket {
    pub bucket: u32,
    pub refill_per_second: f64,
}

/// ARM's buckets per (principal, subscription or tenant, operation type).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmLimits {
    pub reads: Bucket,
    pub writes: Bucket,
    pub deletes: Bucket,
}

impl ArmLimits {
    pub fn documented() -> Self {
        Self {
            reads: Bucket {
                bucket: 250,
                refill_per_second: 25.0,
            },
            writes: Bucket {
                bucket: 200,
                refill_per_second: 10.0,
            },
            deletes: Bucket {
                bucket: 200,
                refill_per_second: 10.0,
            },
        }
    }
}

/// At most `requests` in any `window_seconds`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

/// ARM's operation types, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArmKind {
    Reads,
    Writes,
    Deletes,
}

impl ArmKind {
    pub fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => ArmKind::Reads,
            http::Method::DELETE => ArmKind::Deletes,
            _ => ArmKind::Writes,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArmKind::Reads => "reads",
            ArmKind::Writes => "writes",
            ArmKind::Deletes => "deletes",
        }
    }
}

/// A bucket's state: tokens left as of `at`.
#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: f64,
    at: DateTime<Utc>,
}

/// What the throttles decided about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Served; these headers go on the answer.
    Pass(Vec<(String, String)>),
    /// 429 with `Retry-After` seconds and these headers.
    Throttled {
        retry_after: u64,
        headers: Vec<(String, String)>,
    },
}

/// The throttles' state: one bucket per ARM key, one window per vault.
#[derive(Debug, Clone, Default)]
pub struct Throttles {
    pub spec: Option<ThrottlingSpec>,
    arm: HashMap<(String, String, ArmKind), Level>,
    vaults: HashMap<String, VecDeque<DateTime<Utc>>>,
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Whole seconds, rounded up, at least 1: a client that waits exactly this long finds room.
fn retry_secs(wait: f64) -> u64 {
    (wait.ceil() as u64).max(1)
}

impl Throttles {
    pub fn new(spec: Option<ThrottlingSpec>) -> Self {
        Self {
            spec,
            ..Self::default()
        }
    }

    /// An ARM request of `principal` to `path` (`/subscriptions/{id}/...` or tenant scope).
    pub fn arm(
        &mut self,
        principal: &str,
        path: &str,
        method: &http::Method,
        now: DateTime<Utc>,
    ) -> Verdict {
        let Some(limits) = self.spec.and_then(|s| s.arm) else {
            return Verdict::Pass(Vec::new());
        };
        let kind = ArmKind::of(method);
        let b = match kind {
            ArmKind::Reads => limits.reads,
            ArmKind::Writes => limits.writes,
            ArmKind::Deletes => limits.deletes,
        };
        let mut segs = path.split('/').filter(|s| !s.is_empty());
        let (scope, owner) = match (segs.next(), segs.next()) {
            (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => {
                ("subscription", id.to_ascii_lowercase())
            }
            _ => ("tenant", String::new()),
        };
        let level = self
            .arm
            .entry((principal.to_string(), owner, kind))
            .or_insert(Level {
                tokens: f64::from(b.bucket),
                at: now,
            });
        let refilled = seconds(now - level.at).max(0.0) * b.refill_per_second;
        level.tokens = (level.tokens + refilled).min(f64::from(b.bucket));
        level.at = now;
        let header = format!("x-ms-ratelimit-remaining-{scope}-{}", kind.name());
        if level.tokens < 1.0 {
            let wait = (1.0 - level.tokens) / b.refill_per_second;
            return Verdict::Throttled {
                retry_after: retry_secs(wait),
                headers: vec![(header, "0".into())],
            };
        }
        level.tokens -= 1.0;
        Verdict::Pass(vec![(header, (level.tokens.floor() as u64).to_string())])
    }

    /// A Key Vault request to `vault` carrying credentials.
    pub fn key_vault(&mut self, vault: &str, now: DateTime<Utc>) -> Verdict {
        let Some(limit) = self.spec.and_then(|s| s.key_vault) else {
            return Verdict::Pass(Vec::new());
        };
        let window = Duration::seconds(i64::from(limit.window_seconds));
        let seen = self.vaults.entry(vault.to_ascii_lowercase()).or_default();
        while seen.front().is_some_and(|t| *t + window <= now) {
            seen.pop_front();
        }
        if seen.len() as u32 >= limit.requests {
            let oldest = seen.front().copied().unwrap_or(now);
            return Verdict::Throttled {
                retry_after: retry_secs(seconds(oldest + window - now)),
                headers: Vec::new(),
            };
        }
        seen.push_back(now);
        Verdict::Pass(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-11-30T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn arm_reads_are_a_bucket_of_250_refilled_at_25_per_second() {
        let mut t = Throttles::new(Some(ThrottlingSpec::documented()));
        let path = "/subscriptions/7C9E/resourceGroups/rg/providers/Microsoft.Web/sites/a";
        for i in 0..250 {
            let v = t.arm("sp", path, &http::Method::GET, t0());
            let left = (249 - i).to_string();
            assert_eq!(
                v,
                Verdict::Pass(vec![(
                    "x-ms-ratelimit-remaining-subscription-reads".into(),
                    left
                )])
            );
        }
        let Verdict::Throttled { retry_after, .. } = t.arm("sp", path, &http::Method::GET, t0())
        else {
            panic!("the 251st read in the same instant is throttled");
        };
        assert_eq!(retry_after, 1);
        // Writes have their own bucket; another principal has its own buckets.
        assert!(matches!(
            t.arm("sp", path, &http::Method::PUT, t0()),
            Verdict::Pass(_)
        ));
        assert!(matches!(
            t.arm("other", path, &http::Method::GET, t0()),
            Verdict::Pass(_)
        ));
        // 25 tokens a second: after 200 ms, 5 reads pass and the 6th does not.
        let later = t0() + Duration::milliseconds(200);
        for _ in 0..5 {
            assert!(matches!(
                t.arm("sp", path, &http::Method::GET, later),
                Verdict::Pass(_)
            ));
        }
        assert!(matches!(
            t.arm("sp", path, &http::Method::GET, later),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn arm_writes_refill_at_10_per_second_and_deletes_are_separate() {
        let mut t = Throttles::new(Some(ThrottlingSpec::documented()));
        let path = "/subscriptions/s/resourceGroups/rg";
        for _ in 0..200 {
            assert!(matches!(
                t.arm("sp", path, &http::Method::POST, t0()),
                Verdict::Pass(_)
            ));
        }
        assert!(matches!(
            t.arm("sp", path, &http::Method::PATCH, t0()),
            Verdict::Throttled { retry_after: 1, .. }
        ));
        assert!(matches!(
            t.arm("sp", path, &http::Method::DELETE, t0()),
            Verdict::Pass(_)
        ));
        let later = t0() + Duration::milliseconds(100);
        assert!(matches!(
            t.arm("sp", path, &http::Method::PUT, later),
            Verdict::Pass(_)
        ));
        assert!(matches!(
            t.arm("sp", path, &http::Method::PUT, later),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn key_vault_allows_4000_per_10_seconds_per_vault() {
        let mut t = Throttles::new(Some(ThrottlingSpec::documented()));
        for _ in 0..4000 {
            assert!(matches!(t.key_vault("kv-a", t0()), Verdict::Pass(_)));
        }
        let later = t0() + Duration::milliseconds(2500);
        assert_eq!(
            t.key_vault("KV-A", later),
            Verdict::Throttled {
                retry_after: 8,
                headers: Vec::new()
            }
        );
        assert!(matches!(t.key_vault("kv-b", later), Verdict::Pass(_)));
        let after = t0() + Duration::seconds(10);
        assert!(matches!(t.key_vault("kv-a", after), Verdict::Pass(_)));
    }

    #[test]
    fn nothing_is_throttled_unless_the_scenario_asks() {
        let mut t = Throttles::new(None);
        for _ in 0..10_000 {
            assert_eq!(
                t.arm("sp", "/subscriptions/s", &http::Method::GET, t0()),
                Verdict::Pass(Vec::new())
            );
            assert_eq!(t.key_vault("kv", t0()), Verdict::Pass(Vec::new()));
        }
    }
}
