//! The console's day: when "today" began in its time zone
//! (`CRM_TIME_ZONE`), for the dashboard's cards and an agent's trend.

use jiff::tz::TimeZone;

/// The Unix ms of the last midnight in `zone` at `now_ms` (the start of
/// "today" on the cards).
pub fn local_midnight(zone: &TimeZone, now_ms: i64) -> i64 {
    jiff::Timestamp::from_millisecond(now_ms)
        .ok()
        .and_then(|now| now.to_zoned(zone.clone()).start_of_day().ok())
        .map_or(
            now_ms - now_ms.rem_euclid(24 * 60 * 60 * 1000),
            |midnight| midnight.timestamp().as_millisecond(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_starts_at_midnight_in_the_console_s_zone() {
        let noon_utc = 1_772_712_000_000; // 2026-03-05 12:00 UTC
        let day = 24 * 3_600_000;
        assert_eq!(local_midnight(&TimeZone::UTC, noon_utc), noon_utc - day / 2);
        // 02:00 on March 6 in Kiritimati (UTC+14): its midnight was 10:00 UTC.
        let kiritimati = TimeZone::get("Pacific/Kiritimati").unwrap();
        assert_eq!(
            local_midnight(&kiritimati, noon_utc),
            noon_utc - 2 * 3_600_000
        );
        // 04:00 in Los Angeles (UTC-8): its midnight was 08:00 UTC.
        let la = TimeZone::get("America/Los_Angeles").unwrap();
        assert_eq!(local_midnight(&la, noon_utc), noon_utc - 4 * 3_600_000);
    }
}
