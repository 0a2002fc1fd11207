//! Kendo's delivery schedule as `send` runs it: how many attempts, how long
//! each may take and how long to wait between them. The help texts quote
//! [`describe`], so they say what this code does.

use std::time::Duration;

/// Kendo's attempts per delivery (the `--attempts` default).
pub(crate) const ATTEMPTS: u32 = 3;
/// The most attempts `--attempts` allows.
pub(crate) const MAX_ATTEMPTS: i64 = 10;
/// Kendo's timeout for one attempt.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the second attempt; each further wait doubles.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The placeholder in help texts that [`describe`] replaces.
pub(crate) const PLACEHOLDER: &str = "{schedule}";

/// The wait before attempt `next` (2, 3, ...): 1 s, 2 s, 4 s, ... as Kendo
/// backs off, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(next: u32) -> Duration {
    let doublings = next.saturating_sub(2).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// The default schedule in words, from the constants above: "3 attempts,
/// each timing out after 10 s, 1 s then 2 s apart".
pub(crate) fn describe() -> String {
    let waits: Vec<String> = (2..=ATTEMPTS)
        .map(|next| format!("{} s", backoff(next).as_secs()))
        .collect();
    let apart = match waits.as_slice() {
        [] => String::new(),
        [only] => format!(", {only} apart"),
        [init @ .., last] => format!(", {} then {last} apart", init.join(", ")),
    };
    format!(
        "{ATTEMPTS} attempts, each timing out after {} s{apart}",
        ATTEMPT_TIMEOUT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_kendos_documented_schedule() {
        assert_eq!(
            describe(),
            "3 attempts, each timing out after 10 s, 1 s then 2 s apart"
        );
    }

    #[test]
    fn waits_double_from_one_second_up_to_the_cap() {
        let waits: Vec<u64> = (2..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
