//! When a failed delivery is tried again: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h and
//! 2 h after the attempts before, then every 4 h, for as long as the next attempt
//! falls within 24 h of the first; then the delivery is dead. That is 13 attempts,
//! the last 23 h 42 min 35 s after the first (README, "Webhooks").

use std::time::Duration;

const DELAYS_MS: [i64; 7] = [5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000];
const THEN_EVERY_MS: i64 = 4 * 3_600_000;
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    first_retry_ms: i64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule { first_retry_ms: DELAYS_MS[0] }
    }
}

impl RetrySchedule {
    /// The schedule with every delay scaled so that the first is `first_retry` (tests
    /// shrink it); the 24-hour limit stays.
    pub fn with_first_retry(first_retry: Duration) -> Self {
        RetrySchedule { first_retry_ms: i64::try_from(first_retry.as_millis()).unwrap_or(i64::MAX).max(1) }
    }

    /// The delay after the `failed`-th failed attempt.
    fn delay_ms(&self, failed: i32) -> i64 {
        let index = usize::try_from(failed.saturating_sub(1)).unwrap_or(0);
        let standard = DELAYS_MS.get(index).copied().unwrap_or(THEN_EVERY_MS);
        let scaled = i128::from(standard) * i128::from(self.first_retry_ms) / i128::from(DELAYS_MS[0]);
        i64::try_from(scaled).unwrap_or(i64::MAX).max(1)
    }

    /// When to attempt a delivery again after its `failed`-th failed attempt, at
    /// `now`, the first having been at `first_attempt_at`; `None`: give up.
    pub fn next_attempt_at(&self, failed: i32, first_attempt_at: i64, now: i64) -> Option<i64> {
        let next = now.saturating_add(self.delay_ms(failed));
        (next <= first_attempt_at.saturating_add(GIVE_UP_AFTER_MS)).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets from the first attempt of every attempt of a delivery that always fails.
    fn attempts(schedule: RetrySchedule) -> Vec<i64> {
        let mut at = vec![0];
        while let Some(next) = schedule.next_attempt_at(i32::try_from(at.len()).unwrap(), 0, *at.last().unwrap()) {
            at.push(next);
        }
        at
    }

    #[test]
    fn the_documented_schedule_makes_13_attempts_within_24_hours() {
        let seconds: Vec<i64> = attempts(RetrySchedule::default()).iter().map(|ms| ms / 1000).collect();
        let hours = |h: i64| h * 3600 + 42 * 60 + 35;
        assert_eq!(
            seconds,
            [0, 5, 35, 155, 755, 2555, hours(1), hours(3), hours(7), hours(11), hours(15), hours(19), hours(23)]
        );
    }

    #[test]
    fn a_shrunk_schedule_scales_every_delay_but_not_the_limit() {
        let fast = RetrySchedule::with_first_retry(Duration::from_millis(50));
        assert_eq!(fast.next_attempt_at(1, 0, 0), Some(50));
        assert_eq!(fast.next_attempt_at(2, 0, 0), Some(300));
        assert_eq!(fast.next_attempt_at(9, 0, 0), Some(144_000));
        assert_eq!(fast.next_attempt_at(1, 0, GIVE_UP_AFTER_MS), None);
    }
}
