//! How many credentials a pass runs at once: additive increase, multiplicative decrease (AIMD,
//! as TCP's congestion control) on Azure's 429s, between 1 and the configured ceiling.
//!
//! Why: ARM, Key Vault and Graph throttle per principal (ARM: token buckets per subscription,
//! principal and operation type; Key Vault: per vault; Graph: writes per app). A fixed
//! parallelism either stays below what Azure allows or keeps hitting 429s, and every 429 is a
//! request spent and a Retry-After waited. The pass (`usecase::pass`) scopes a counter of
//! 429s around each credential (`azure::common::THROTTLED`); a credential that met one halves
//! the limit, one that met none adds `1 / limit` (one whole credential per round of `limit`
//! completions).
//! As in TCP's fast recovery, one congestion event halves once: credentials started before the
//! last decrease met the same overload, so their 429s do not halve again ([`Aimd::start`]
//! hands each credential the epoch it started in).
//!
//! Guarantees: the limit stays within `1..=ceiling`; it starts at the ceiling (nothing is
//! known about Azure's load yet), so a pass Azure does not throttle runs as before.

/// The current limit of credentials in flight.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    ceiling: usize,
    /// Number of decreases so far.
    epoch: u64,
}

impl Aimd {
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: ceiling as f64,
            ceiling,
            epoch: 0,
        }
    }

    /// A credential starts: the epoch to hand back to [`Aimd::finished`].
    pub fn start(&self) -> u64 {
        self.epoch
    }

    /// How many may be in flight now.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.ceiling)
    }

    /// One credential finished; `throttled`: how many 429s its requests met; `started`: what
    /// [`Aimd::start`] said when it started.
    pub fn finished(&mut self, started: u64, throttled: u64) {
        if throttled == 0 {
            self.limit = (self.limit + 1.0 / self.limit).min(self.ceiling as f64);
        } else if started == self.epoch {
            self.limit = (self.limit / 2.0).max(1.0);
            self.epoch += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_throttling_and_climbs_back_one_per_round() {
        let mut a = Aimd::new(8);
        assert_eq!(a.limit(), 8);
        a.finished(a.start(), 0);
        assert_eq!(a.limit(), 8, "never above the ceiling");
        a.finished(a.start(), 3);
        assert_eq!(a.limit(), 4);
        a.finished(a.start(), 1);
        a.finished(a.start(), 1);
        a.finished(a.start(), 1);
        assert_eq!(a.limit(), 1, "never below one");
        // From 1: one completion makes 2 (1 + 1/1); then about two more make 3 (+1/2, +1/2.5,
        // +1/2.9: the increase per completion shrinks as the limit grows).
        a.finished(a.start(), 0);
        assert_eq!(a.limit(), 2);
        a.finished(a.start(), 0);
        a.finished(a.start(), 0);
        assert_eq!(a.limit(), 2);
        a.finished(a.start(), 0);
        assert_eq!(a.limit(), 3);
        for _ in 0..100 {
            a.finished(a.start(), 0);
        }
        assert_eq!(a.limit(), 8);
    }

    #[test]
    fn one_overload_halves_once() {
        let mut a = Aimd::new(16);
        // Eight credentials started together and all met the same throttling.
        let started = a.start();
        for _ in 0..8 {
            a.finished(started, 2);
        }
        assert_eq!(a.limit(), 8, "halved once, not eight times");
        // One started after the decrease and still throttled: the overload goes on.
        a.finished(a.start(), 1);
        assert_eq!(a.limit(), 4);
    }

    #[test]
    fn a_ceiling_of_zero_still_runs_one() {
        let mut a = Aimd::new(0);
        assert_eq!(a.limit(), 1);
        a.finished(a.start(), 5);
        assert_eq!(a.limit(), 1);
    }
}
