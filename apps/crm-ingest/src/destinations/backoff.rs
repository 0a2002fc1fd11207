//! Exponential backoff with full jitter (AWS's "Exponential Backoff And
//! Jitter"): the wait before the next attempt is uniform in `[0, cap]`,
//! the cap doubling after each failure from `first_delay` up to
//! `max_delay`. Early retries come within seconds, so a destination back
//! after a short outage has its backlog within a minute or two; later ones
//! spread out, and replicas never retry in step.

use std::time::Duration;

use super::settings::RetrySettings;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// The schedule of `retry`.
    pub fn new(retry: &RetrySettings) -> Self {
        Self {
            first: retry.first_delay,
            max: retry.max_delay,
        }
    }

    /// The longest wait after `failures` failures in a row (1: the first).
    pub fn cap(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1_u32 << doublings)
            .map_or(self.max, |cap| cap.min(self.max))
    }

    /// The wait after `failures` failures in a row: uniform in `[0, cap]`,
    /// drawn from `random`.
    pub fn delay(&self, failures: u32, random: u64) -> Duration {
        let cap = u64::try_from(self.cap(failures).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(random % cap.saturating_add(1))
    }
}

/// A random number for the jitter (the system's generator; a fixed value if
/// it fails, which only removes the jitter).
pub fn random() -> u64 {
    getrandom::u64().unwrap_or(0x5DEE_CE66_D1CE_5EED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(&RetrySettings::default())
    }

    #[test]
    fn the_cap_doubles_from_the_first_delay_up_to_the_maximum() {
        let b = backoff();
        assert_eq!(b.cap(1), Duration::from_secs(1));
        assert_eq!(b.cap(2), Duration::from_secs(2));
        assert_eq!(b.cap(6), Duration::from_secs(32));
        assert_eq!(b.cap(20), Duration::from_secs(15 * 60));
        assert_eq!(b.cap(u32::MAX), Duration::from_secs(15 * 60));
    }

    #[test]
    fn the_delay_stays_within_the_cap() {
        let b = backoff();
        for random in [0, 1, 999, 1000, 1001, u64::MAX] {
            assert!(b.delay(1, random) <= Duration::from_secs(1));
        }
    }

    /// A target down for a day is tried about 200 times: the caps reach
    /// 15 min after 11 failures (17 min of waiting on average), then the
    /// waits average 7.5 min.
    #[test]
    fn a_day_of_retries_takes_about_two_hundred_attempts() {
        let b = backoff();
        let mut expected = Duration::ZERO;
        let mut attempts = 0;
        while expected < Duration::from_secs(24 * 3600) {
            attempts += 1;
            expected += b.cap(attempts) / 2;
        }
        assert!((190..=210).contains(&attempts), "{attempts}");
    }
}
