//! How the dashboard writes times, counts, scores and names for people:
//! clock times and "3 min ago" rather than ISO strings, in the console's
//! zone (`CRM_TIME_ZONE`) with its offset, thousands grouped.

use std::cell::RefCell;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

thread_local! {
    /// The zone the page being rendered shows times in (rendering is
    /// synchronous: one page at a time per thread).
    static ZONE: RefCell<TimeZone> = const { RefCell::new(TimeZone::UTC) };
}

/// Runs `render` with times shown in `zone` (`CRM_TIME_ZONE`).
pub(super) fn in_zone<T>(zone: &TimeZone, render: impl FnOnce() -> T) -> T {
    let previous = ZONE.with(|z| z.replace(zone.clone()));
    let result = render();
    ZONE.with(|z| *z.borrow_mut() = previous);
    result
}

/// The zone's name for people: `UTC`, or `Europe/Paris`.
pub(super) fn zone_name() -> String {
    ZONE.with(|z| z.borrow().iana_name().unwrap_or("UTC").to_owned())
}

fn is_utc() -> bool {
    ZONE.with(|z| {
        z.borrow()
            .iana_name()
            .is_none_or(|n| n == "UTC" || n == "Etc/UTC")
    })
}

pub(super) fn local(ms: i64) -> Zoned {
    let at = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    ZONE.with(|z| at.to_zoned(z.borrow().clone()))
}

/// `2026-03-05 12:00:03 UTC`, or in another zone with its offset:
/// `2026-03-05 13:00:03 +01:00`.
pub(super) fn full(ms: i64) -> String {
    let t = local(ms);
    if is_utc() {
        t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        t.strftime("%Y-%m-%d %H:%M:%S %:z").to_string()
    }
}

/// `2026-03-05T12:00:03Z`, for `<time datetime>`.
pub(super) fn iso(ms: i64) -> String {
    Timestamp::from_millisecond(ms.div_euclid(1000) * 1000)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `12:00:03` on the day of `now`, `2026-03-05 12:00` on another day (in
/// the page's zone).
pub(super) fn clock(now: i64, ms: i64) -> String {
    let t = local(ms);
    if t.date() == local(now).date() {
        t.strftime("%H:%M:%S").to_string()
    } else {
        t.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// The zone as the page names it: `UTC`, or `Europe/Paris (+01:00)`.
pub(super) fn zone_label(now: i64) -> String {
    if is_utc() {
        "UTC".to_owned()
    } else {
        format!("{} ({})", zone_name(), local(now).strftime("%:z"))
    }
}

/// `3 min ago`; a time ahead of `now` (clock skew) is `just now`.
pub(super) fn ago(now: i64, ms: i64) -> String {
    let since = now.saturating_sub(ms);
    if since < 5_000 {
        "just now".to_owned()
    } else {
        format!("{} ago", duration_words(since))
    }
}

/// `42 s`, `3 min`, `2 h 5 min`, `3 days`.
pub(super) fn duration_words(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => match (s / 3_600, s % 3_600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ if s < 2 * 86_400 => "1 day".to_owned(),
        _ => format!("{} days", s / 86_400),
    }
}

/// `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `newest 12 calls`, nothing for none.
pub(super) fn counted(n: usize, one: &str, many: &str) -> String {
    let n = n as u64;
    if n == 0 {
        return String::new();
    }
    format!(
        "newest {} {}",
        thousands(n),
        if n == 1 { one } else { many }
    )
}

/// `87.5`; whole scores without the `.0`.
pub(super) fn score(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// `4:05` (minutes and seconds), `1:02:03` past an hour.
pub(super) fn duration(secs: f64) -> String {
    let total = secs.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

pub(super) fn agent(name: Option<&str>, id: Option<&str>) -> String {
    match (name, id) {
        (Some(name), _) => name.to_owned(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => String::new(),
    }
}

/// `text` as one percent-encoded URL path segment or query value: every
/// byte but the unreserved ones (RFC 3986) encoded, so an id with `/`,
/// `?`, `#` or `%` links to itself.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
