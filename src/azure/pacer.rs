//! The client-side pacer of ARM requests: the rotator spends ARM's token buckets at the rate
//! ARM refills them instead of finding their edge with 429s (issue #19: a 1,000-credential pass
//! met 287 of them while parallelism adapted).
//!
//! ARM throttles "per subscription, per service principal, and per operation type", with a
//! token bucket per region: reads 250 refilled at 25/s, writes 200 at 10/s, deletes 200 at
//! 10/s; the same figures apply at tenant scope; GET is a read, DELETE a delete, anything else
//! a write ("Understand how Azure Resource Manager throttles requests", "Regional throttling
//! and token bucket algorithm",
//! https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling;
//! the emulator models the same figures in `azure_emulator::throttle`). One process is one
//! principal, so [`ArmPacer`] keeps one bucket per (subscription or tenant, operation type),
//! shared by every ARM client of the process (it lives in [`super::ServiceOptions`]).
//!
//! Expected flow: [`ArmPacer::acquire`] before each try (reserves a token and waits until it is
//! due), [`Ticket::answered`] with each answer. It adapts to what ARM says: the answer's
//! `x-ms-ratelimit-remaining-{subscription,tenant}-{reads,writes,deletes}`, less the requests
//! reserved and not answered yet, lowers the local bucket when ARM has less than it counts on
//! (requests that reached ARM later than they were reserved; others spending it too: another
//! instance of the rotator, the same identity in a pipeline); a 429 empties it and holds
//! every request of that bucket until its `Retry-After`.
//!
//! Caveats: the local bucket is a little smaller and slower than ARM's ([`MARGIN`], [`PACE`]):
//! requests reserved at the refill rate arrive at ARM with network jitter, and ARM counts them
//! on arrival. A wait longer than [`MAX_WAIT`] is not waited for: the request is not sent and
//! the caller gets [`Paced`] (a throttle, like Azure's own over-long `Retry-After`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Tokens of each documented bucket the pacer leaves unspent: room for the jitter between
/// reserving a token here and ARM counting the request on arrival.
pub const MARGIN: f64 = 5.0;
/// The share of the documented refill rate the pacer spends, for the same reason.
pub const PACE: f64 = 0.95;
/// The longest a request waits for its token. A queue of requests spends a bucket at its
/// refill rate (e.g. 60 app settings listed at once, a POST each, once the 195 writes are
/// spent: 6 s), which is the pacer's job; a longer wait comes from a long `Retry-After`, and
/// like one (`super::RetryPolicy`) it is not waited for in a Functions invocation.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// ARM's operation types, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArmOp {
    Read,
    Write,
    Delete,
}

impl ArmOp {
    /// GET reads, DELETE deletes, every other method writes (ARM's own split).
    pub fn of(method: &reqwest::Method) -> Self {
        match *method {
            reqwest::Method::GET => ArmOp::Read,
            reqwest::Method::DELETE => ArmOp::Delete,
            _ => ArmOp::Write,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArmOp::Read => "reads",
            ArmOp::Write => "writes",
            ArmOp::Delete => "deletes",
        }
    }
}

/// One documented bucket: `size` tokens at most, `per_second` back each second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub size: f64,
    pub per_second: f64,
}

impl Rate {
    /// The documented figures for `op` (module docs).
    pub fn documented(op: ArmOp) -> Self {
        match op {
            ArmOp::Read => Rate {
                size: 250.0,
                per_second: 25.0,
            },
            ArmOp::Write | ArmOp::Delete => Rate {
                size: 200.0,
                per_second: 10.0,
            },
        }
    }

    /// What the pacer spends of a documented bucket.
    fn paced(self) -> Self {
        Rate {
            size: (self.size - MARGIN).max(1.0),
            per_second: self.per_second * PACE,
        }
    }
}

/// A bucket's state: `tokens` as of `at` (negative: reserved ahead of the refill), no request
/// before `not_before` (a 429's `Retry-After`), and `pending` requests reserved and not yet
/// answered (ARM's remaining count does not include those).
#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: f64,
    at: Instant,
    not_before: Instant,
    pending: u32,
}

/// A reserved token of one bucket, until the request's answer ([`Ticket::answered`]) or until
/// the request is dropped unanswered.
#[derive(Debug)]
pub struct Ticket<'p> {
    pacer: &'p ArmPacer,
    key: (String, ArmOp),
    header: String,
}

/// Why a request was not sent: its bucket is not due for `wait`, longer than the caller allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paced {
    pub wait: Duration,
}

/// The buckets of one process (module docs).
#[derive(Debug)]
pub struct ArmPacer {
    rates: fn(ArmOp) -> Rate,
    levels: Mutex<HashMap<(String, ArmOp), Level>>,
}

impl Default for ArmPacer {
    fn default() -> Self {
        Self::with_rates(Rate::documented)
    }
}

/// The bucket a request path spends: its subscription (lower-cased: ARM ids compare
/// case-insensitively), or the tenant's.
fn scope(path: &str) -> (String, &'static str) {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => {
            (id.to_ascii_lowercase(), "subscription")
        }
        _ => (String::new(), "tenant"),
    }
}

impl ArmPacer {
    /// A pacer spending buckets of `rates` (before [`MARGIN`] and [`PACE`]).
    pub fn with_rates(rates: fn(ArmOp) -> Rate) -> Self {
        Self {
            rates,
            levels: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the bucket `key`, refilled up to now.
    fn with_level<T>(&self, key: &(String, ArmOp), f: impl FnOnce(&mut Level, Rate) -> T) -> T {
        let rate = (self.rates)(key.1).paced();
        let now = Instant::now();
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let level = levels.entry(key.clone()).or_insert(Level {
            tokens: rate.size,
            at: now,
            not_before: now,
            pending: 0,
        });
        let refilled = now.saturating_duration_since(level.at).as_secs_f64() * rate.per_second;
        level.tokens = (level.tokens + refilled).min(rate.size);
        level.at = now;
        f(level, rate)
    }

    /// Reserves a token for a request to `path` and waits until it is due; `Paced` (nothing
    /// reserved) when that is more than `max_wait` away. The ticket goes with the request: its
    /// answer is told to [`Ticket::answered`].
    pub async fn acquire(
        &self,
        path: &str,
        method: &reqwest::Method,
        max_wait: Duration,
    ) -> Result<Ticket<'_>, Paced> {
        let op = ArmOp::of(method);
        let (owner, scope) = scope(path);
        let key = (owner, op);
        let wait = self.with_level(&key, |level, rate| {
            let held = level.not_before.saturating_duration_since(level.at);
            let debt = (1.0 - level.tokens).max(0.0) / rate.per_second;
            let wait = held.max(Duration::from_secs_f64(debt));
            if wait > max_wait {
                return Err(Paced { wait });
            }
            level.tokens -= 1.0;
            level.pending += 1;
            Ok(wait)
        })?;
        let ticket = Ticket {
            pacer: self,
            key,
            header: format!("x-ms-ratelimit-remaining-{scope}-{}", op.name()),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(ticket)
    }
}

impl Ticket<'_> {
    /// Learns from ARM's answer (`status` 0: none came): the bucket's remaining count, or a
    /// 429's `Retry-After`.
    pub fn answered(self, status: u16, headers: Option<&HeaderMap>, retry_after: Option<Duration>) {
        let remaining = headers
            .and_then(|h| h.get(self.header.as_str()))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r >= 0.0);
        self.pacer.with_level(&self.key, |level, _| {
            if status == 429 {
                level.tokens = level.tokens.min(0.0);
                let until = level.at + retry_after.unwrap_or(Duration::from_secs(1));
                level.not_before = level.not_before.max(until);
            } else if let Some(r) = remaining {
                // ARM counts a request when it arrives: the others reserved and not answered
                // yet may not have arrived. Others may spend the same bucket (another instance,
                // the same identity in a pipeline): never count on more than ARM says is left.
                let unanswered = f64::from(level.pending.saturating_sub(1));
                level.tokens = level.tokens.min(r - unanswered - MARGIN);
            }
        });
        // Dropping the ticket ends its pending count.
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.pacer.with_level(&self.key, |level, _| {
            level.pending = level.pending.saturating_sub(1);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "/subscriptions/AAA/resourceGroups/rg/providers/Microsoft.Web/sites/s";
    const LONG: Duration = Duration::from_secs(3600);

    fn small(_: ArmOp) -> Rate {
        Rate {
            size: 7.0,
            per_second: 10.0,
        }
    }

    /// How long `n` acquisitions take on the paused clock (each answered at once, without a
    /// remaining count).
    async fn time_of(p: &ArmPacer, n: usize, path: &str, method: reqwest::Method) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            let ticket = p
                .acquire(path, &method, LONG)
                .await
                .expect("within the wait");
            ticket.answered(200, None, None);
        }
        start.elapsed()
    }

    /// Sends one request to `SUB` and answers it with `status` and headers or `Retry-After`.
    async fn answer(
        p: &ArmPacer,
        method: reqwest::Method,
        status: u16,
        h: Option<&HeaderMap>,
        ra: Option<Duration>,
    ) {
        let ticket = p
            .acquire(SUB, &method, LONG)
            .await
            .expect("within the wait");
        ticket.answered(status, h, ra);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_bursts_its_size_then_paces_at_its_refill_rate() {
        let p = ArmPacer::with_rates(small);
        // 7 − MARGIN = 2 at once, then 9.5 a second.
        assert_eq!(
            time_of(&p, 2, SUB, reqwest::Method::PUT).await,
            Duration::ZERO
        );
        let t = time_of(&p, 19, SUB, reqwest::Method::PUT).await;
        let expected = 19.0 / (10.0 * PACE);
        assert!(
            (t.as_secs_f64() - expected).abs() < 0.05,
            "{t:?}, expected about {expected} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_subscription_and_operation_type() {
        let p = ArmPacer::with_rates(small);
        time_of(&p, 2, SUB, reqwest::Method::PUT).await;
        // Reads, deletes and another subscription (or the tenant) have their own buckets; the
        // same subscription in other case is the same one.
        for (path, method) in [
            (SUB, reqwest::Method::GET),
            (SUB, reqwest::Method::DELETE),
            (
                "/subscriptions/bbb/resourceGroups/rg",
                reqwest::Method::PATCH,
            ),
            ("/providers/Microsoft.Web/operations", reqwest::Method::POST),
        ] {
            assert_eq!(time_of(&p, 2, path, method).await, Duration::ZERO);
        }
        let same = SUB.replace("AAA", "aaa");
        assert!(time_of(&p, 1, &same, reqwest::Method::POST).await > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_the_bucket_until_its_retry_after() {
        let p = ArmPacer::default();
        answer(
            &p,
            reqwest::Method::GET,
            429,
            None,
            Some(Duration::from_secs(4)),
        )
        .await;
        let t = time_of(&p, 1, SUB, reqwest::Method::GET).await;
        assert!(t >= Duration::from_secs(4), "{t:?}");
        // Writes were not throttled.
        assert_eq!(
            time_of(&p, 1, SUB, reqwest::Method::PUT).await,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_remaining_count_arm_reports_lowers_the_bucket() {
        let p = ArmPacer::default();
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-writes",
            "5".parse().expect("header"),
        );
        answer(&p, reqwest::Method::PUT, 200, Some(&h), None).await;
        // 5 left, MARGIN kept: the next write waits for the refill.
        let t = time_of(&p, 1, SUB, reqwest::Method::PUT).await;
        assert!(t >= Duration::from_millis(100), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_allowed_is_refused_without_spending() {
        let p = ArmPacer::default();
        answer(
            &p,
            reqwest::Method::PUT,
            429,
            None,
            Some(Duration::from_secs(90)),
        )
        .await;
        let refused = p
            .acquire(SUB, &reqwest::Method::PUT, Duration::from_secs(30))
            .await;
        assert!(matches!(refused, Err(Paced { wait }) if wait > Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(91)).await;
        assert_eq!(
            time_of(&p, 1, SUB, reqwest::Method::PUT).await,
            Duration::ZERO
        );
    }
}
