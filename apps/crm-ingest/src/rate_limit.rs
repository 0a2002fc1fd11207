//! [`RateLimit`]: at most one log line per interval, and how many were
//! skipped in between, so a failure that repeats thousands of times a
//! second is reported without drowning the log.
//!
//! ```
//! use std::time::Duration;
//! use crm_ingest::rate_limit::RateLimit;
//!
//! static INBOX_DOWN: RateLimit = RateLimit::new(Duration::from_secs(10));
//! if let Some(skipped) = INBOX_DOWN.check() {
//!     tracing::warn!(skipped, "inbox unavailable");
//! }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets one line through per `every`, counting the ones held back.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    skipped: u64,
}

impl RateLimit {
    /// A limit of one line per `every` (usable in a `static`).
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(State {
                last: None,
                skipped: 0,
            }),
        }
    }

    /// `Some(skipped)` when a line may be written now, with the number of
    /// lines held back since the last one; `None` (and one more skipped)
    /// otherwise.
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`check`](Self::check) at `now` (for tests).
    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if !due {
            state.skipped += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_those_held_back() {
        let limit = RateLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limit.check_at(start), Some(0), "the first line passes");
        for i in 1..=1000 {
            assert_eq!(limit.check_at(start + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.check_at(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(limit.check_at(start + Duration::from_secs(11)), None);
        assert_eq!(limit.check_at(start + Duration::from_secs(20)), Some(1));
    }
}
