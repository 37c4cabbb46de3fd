//! Floors no policy can go under (issue #15), independent of each other:
//!
//! - [`grace_floor`]: the old secret stays at least this long after the new one is out wherever
//!   a consumer cannot be read back (a person following a notify-only instruction, an API
//!   connection's write-only parameter, an encrypted Automation variable): nothing can confirm
//!   that consumer switched, so `graceDays: 0` would cut it off at once.
//! - [`MIN_FORCED_INTERVAL`]: how long after a rotation a forced one is refused, so repeated
//!   `force: true` calls cannot churn secrets (and messages to people) whatever the grace.

use chrono::Duration;

use super::Consumer;

/// Least grace, in days, when a person must act on a notify-only instruction.
pub const MIN_GRACE_DAYS_NOTIFY_ONLY: i64 = 3;
/// Least grace, in days, for consumers written by the rotator but not readable back.
pub const MIN_GRACE_DAYS_WRITE_ONLY: i64 = 1;

/// A forced rotation is refused until this long after the credential's last rotation.
pub const MIN_FORCED_INTERVAL: Duration = Duration::hours(1);

/// The least `graceDays` the consumers allow, and the consumer that sets it; `None` when every
/// consumer can be read back.
pub fn grace_floor(consumers: &[Consumer]) -> Option<(i64, String)> {
    consumers
        .iter()
        .filter_map(|c| {
            let days = match c {
                Consumer::NotifyOnly { .. } => MIN_GRACE_DAYS_NOTIFY_ONLY,
                Consumer::ApiConnection { .. } | Consumer::AutomationVariable { .. } => {
                    MIN_GRACE_DAYS_WRITE_ONLY
                }
                Consumer::AppSettingKeyVaultRef { .. } | Consumer::AppSettingValue { .. } => {
                    return None;
                }
            };
            Some((days, c.describe()))
        })
        .max_by_key(|(d, _)| *d)
}

/// The error for a grace under the floor, or `None`.
pub fn grace_problem(grace_days: i64, consumers: &[Consumer]) -> Option<String> {
    let (floor, who) = grace_floor(consumers)?;
    (grace_days < floor).then(|| {
        format!(
            "must be at least {floor} day(s) here, got {grace_days}: {who} cannot be read back, so \
             the old secret must stay long enough for it to switch"
        )
    })
}
