//! How many credentials a pass runs at once: additive increase, multiplicative decrease (AIMD,
//! as TCP's congestion control) on Azure's 429s, between 1 and the configured ceiling.
//!
//! Why: ARM, Key Vault and Graph throttle per principal (ARM: token buckets per subscription,
//! principal and operation type; Key Vault: per vault; Graph: writes per app). A fixed
//! parallelism either stays below what Azure allows or keeps hitting 429s, and every 429 is a
//! request spent and a Retry-After waited. The runner scopes a counter of 429s around each
//! credential (`azure::common::THROTTLED`); a credential that met one halves the limit, one
//! that met none adds `1 / limit` (one whole credential per round of `limit` completions).
//!
//! Guarantees: the limit stays within `1..=ceiling`; it starts at the ceiling (nothing is
//! known about Azure's load yet), so a pass Azure does not throttle runs as before.

/// The current limit of credentials in flight.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    ceiling: usize,
}

impl Aimd {
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: ceiling as f64,
            ceiling,
        }
    }

    /// How many may be in flight now.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.ceiling)
    }

    /// One credential finished; `throttled`: how many 429s its requests met.
    pub fn finished(&mut self, throttled: u64) {
        self.limit = if throttled > 0 {
            (self.limit / 2.0).max(1.0)
        } else {
            (self.limit + 1.0 / self.limit).min(self.ceiling as f64)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_throttling_and_climbs_back_one_per_round() {
        let mut a = Aimd::new(8);
        assert_eq!(a.limit(), 8);
        a.finished(0);
        assert_eq!(a.limit(), 8, "never above the ceiling");
        a.finished(3);
        assert_eq!(a.limit(), 4);
        a.finished(1);
        a.finished(1);
        a.finished(1);
        assert_eq!(a.limit(), 1, "never below one");
        // From 1: one completion makes 2 (1 + 1/1); then about two more make 3 (+1/2, +1/2.5,
        // +1/2.9: the increase per completion shrinks as the limit grows).
        a.finished(0);
        assert_eq!(a.limit(), 2);
        a.finished(0);
        a.finished(0);
        assert_eq!(a.limit(), 2);
        a.finished(0);
        assert_eq!(a.limit(), 3);
        for _ in 0..100 {
            a.finished(0);
        }
        assert_eq!(a.limit(), 8);
    }

    #[test]
    fn a_ceiling_of_zero_still_runs_one() {
        let mut a = Aimd::new(0);
        assert_eq!(a.limit(), 1);
        a.finished(5);
        assert_eq!(a.limit(), 1);
    }
}
