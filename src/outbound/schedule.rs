//! When a failed delivery is tried again: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h
//! after each failure, each delay jittered so that retries of many events spread out; then the
//! delivery has failed. Tests configure a short schedule instead of waiting.

use std::time::Duration;

/// The standard delays, in seconds.
pub const STANDARD_DELAYS_SECS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// Each delay is moved by up to this fraction either way.
pub const JITTER_FRACTION: f64 = 0.1;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The delay before the next attempt once `attempts` attempts have failed (`None`: no
    /// attempt follows). `unit` in `[0, 1)` picks the jitter (random in service, fixed in tests).
    pub fn delay_after(&self, attempts: i64, unit: f64) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = self.delays.get(index)?;
        let factor = 1.0 + JITTER_FRACTION * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Some(base.mul_f64(factor))
    }

    /// The base delay (without jitter) after `attempts` failed attempts.
    pub fn base_after(&self, attempts: i64) -> Option<Duration> {
        self.delay_after(attempts, 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_standard_delays_with_bounded_jitter_then_gives_up() {
        let schedule = RetrySchedule::new(
            STANDARD_DELAYS_SECS
                .iter()
                .map(|&s| Duration::from_secs(s))
                .collect(),
        );
        for (i, secs) in STANDARD_DELAYS_SECS.iter().enumerate() {
            let attempts = i as i64 + 1;
            let base = Duration::from_secs(*secs);
            assert_eq!(schedule.base_after(attempts), Some(base));
            assert_eq!(schedule.delay_after(attempts, 0.0), Some(base.mul_f64(0.9)));
            assert_eq!(schedule.delay_after(attempts, 1.0), Some(base.mul_f64(1.1)));
        }
        assert_eq!(schedule.delay_after(8, 0.5), None);
        assert_eq!(schedule.delay_after(0, 0.5), None);
    }
}
