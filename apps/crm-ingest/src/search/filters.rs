//! A list's query string, parsed: which list, its filters (refused with a
//! sentence when they do not apply or do not parse), and its page.

use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::paging;
use crate::storage::TestFilter;

/// The longest `q` looked up; ids are far shorter.
pub const MAX_QUERY: usize = 200;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `calls`.
    Calls,
    /// `trainings`.
    Trainings,
    /// The verified delivery log.
    Deliveries,
    /// Unverified attempts (`/api/deliveries?verified=false`).
    Unverified,
}

impl List {
    /// The API path that lists it.
    pub fn path(self) -> &'static str {
        match self {
            Self::Calls => "/api/calls",
            Self::Trainings => "/api/trainings",
            Self::Deliveries | Self::Unverified => "/api/deliveries",
        }
    }
}

/// The query string of a list, as sent.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListParams {
    /// Rows per page.
    pub limit: Option<String>,
    /// From the previous page's `Link` header.
    pub cursor: Option<String>,
    /// Substring.
    pub q: Option<String>,
    /// Event name (deliveries).
    pub event: Option<String>,
    /// Outcome (deliveries).
    pub outcome: Option<String>,
    /// Reason (deliveries).
    pub reason: Option<String>,
    /// `exclude`, `only`, `include` (calls, trainings).
    pub test: Option<String>,
    /// Received at or after.
    pub from: Option<String>,
    /// Received at or before.
    pub to: Option<String>,
    /// `true` (the log) or `false` (unverified attempts).
    pub verified: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Parsed filters of one list.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Substring, trimmed; `None` when empty.
    pub q: Option<String>,
    /// Event name.
    pub event: Option<String>,
    /// Outcome name.
    pub outcome: Option<String>,
    /// Reason name.
    pub reason: Option<String>,
    /// Test deliveries.
    pub test: TestFilter,
    /// Unix ms, inclusive.
    pub from_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub to_ms: Option<i64>,
    /// The filters as sent, to carry to the next page's link.
    pub(super) carried: Vec<(&'static str, String)>,
}

impl Filters {
    /// `q` alone, tests included: the dashboard's search box.
    pub fn text(q: &str) -> Self {
        Self {
            q: Some(q.trim().chars().take(MAX_QUERY).collect()).filter(|q: &String| !q.is_empty()),
            test: TestFilter::Include,
            ..Self::default()
        }
    }
}

pub(super) fn bad(message: String) -> ApiError {
    ApiError::bad_request(message)
}

impl ListParams {
    /// Which list `path` shows with these parameters (`verified=false`
    /// turns the log into the unverified attempts).
    pub fn list(&self, base: List) -> Result<List, ApiError> {
        match (base, self.verified.as_deref()) {
            (_, None) => Ok(base),
            (List::Deliveries, Some("true")) => Ok(List::Deliveries),
            (List::Deliveries, Some("false")) => Ok(List::Unverified),
            (List::Deliveries, Some(other)) => {
                Err(bad(format!("verified={other:?}: expected true or false")))
            }
            (_, Some(_)) => Err(bad(format!(
                "verified= applies to /api/deliveries only ({} holds verified deliveries only)",
                base.path()
            ))),
        }
    }

    /// Rows per page and the cursor.
    pub fn page(&self) -> Result<(usize, Option<i64>), ApiError> {
        let page = paging::page(self.limit.as_deref(), self.cursor.as_deref())?;
        Ok((page.limit, page.before))
    }

    /// The filters, checked against what `list` holds.
    pub fn filters(&self, list: List, zone: &TimeZone) -> Result<Filters, ApiError> {
        let mut filters = Filters::default();
        let log = matches!(list, List::Deliveries | List::Unverified);
        let refuse = |name: &str, value: &Option<String>, applies: bool| match value {
            Some(_) if !applies => Err(bad(format!(
                "{name}= does not apply to {}: {}",
                list.path(),
                match name {
                    "test" => "the log does not tell test deliveries apart; search q=_isTest",
                    _ => "it filters /api/deliveries",
                }
            ))),
            _ => Ok(()),
        };
        refuse("event", &self.event, log)?;
        refuse("outcome", &self.outcome, log)?;
        refuse("reason", &self.reason, log)?;
        refuse("test", &self.test, !log)?;
        if let Some(test) = &self.test {
            filters.test = TestFilter::parse(test)
                .ok_or_else(|| bad(format!("test={test:?}: expected exclude, only or include")))?;
        }
        if !log {
            // Always said, as the pages always did.
            filters
                .carried
                .push(("test", filters.test.as_str().to_owned()));
        }
        if let Some(q) = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            if q.chars().count() > MAX_QUERY {
                return Err(bad(format!(
                    "q is {} characters long: at most {MAX_QUERY}",
                    q.chars().count()
                )));
            }
            filters.q = Some(q.to_owned());
            filters.carried.push(("q", q.to_owned()));
        }
        if let Some(event) = &self.event {
            if event.is_empty() || event.len() > 256 || !event.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(bad(format!(
                    "event={event:?}: expected an event name such as call.uploaded"
                )));
            }
            filters.event = Some(event.clone());
            filters.carried.push(("event", event.clone()));
        }
        for (what, value, slot) in [
            ("outcome", &self.outcome, &mut filters.outcome),
            ("reason", &self.reason, &mut filters.reason),
        ] {
            if let Some(v) = value {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err(bad(format!(
                        "{what}={v:?}: expected a name such as accepted or invalid_signature"
                    )));
                }
                *slot = Some(v.clone());
            }
        }
        if let Some(v) = &filters.outcome {
            filters.carried.push(("outcome", v.clone()));
        }
        if let Some(v) = &filters.reason {
            filters.carried.push(("reason", v.clone()));
        }
        if let Some(from) = &self.from {
            filters.from_ms = Some(
                parse_time(from, zone, false).map_err(|e| bad(format!("from={from:?}: {e}")))?,
            );
            filters.carried.push(("from", from.clone()));
        }
        if let Some(to) = &self.to {
            filters.to_ms =
                Some(parse_time(to, zone, true).map_err(|e| bad(format!("to={to:?}: {e}")))?);
            filters.carried.push(("to", to.clone()));
        }
        if let (Some(from), Some(to)) = (filters.from_ms, filters.to_ms) {
            if from >= to {
                return Err(bad("from= is after to=: nothing can match".to_owned()));
            }
        }
        if list == List::Unverified {
            filters.carried.push(("verified", "false".to_owned()));
        }
        Ok(filters)
    }
}

/// Unix ms of `value`: an RFC 3339 time, or a date's midnight in `zone`
/// (with `end`, the next midnight: the whole day). With `end` the result
/// is exclusive (one millisecond after an RFC 3339 time).
pub fn parse_time(value: &str, zone: &TimeZone, end: bool) -> Result<i64, String> {
    if let Ok(at) = value.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond() + i64::from(end));
    }
    let date: jiff::civil::Date = value.parse().map_err(|_| {
        "expected an RFC 3339 time (2026-03-05T12:00:00Z) or a date (2026-03-05)".to_owned()
    })?;
    let date = if end {
        date.tomorrow().map_err(|e| e.to_string())?
    } else {
        date
    };
    let midnight = date.to_zoned(zone.clone()).map_err(|e| e.to_string())?;
    Ok(midnight.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_whole_days_in_the_zone() {
        let utc = TimeZone::UTC;
        assert_eq!(parse_time("1970-01-01T00:00:01Z", &utc, false), Ok(1_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", &utc, true), Ok(1_001));
        assert_eq!(parse_time("1970-01-02", &utc, false), Ok(86_400_000));
        assert_eq!(parse_time("1970-01-02", &utc, true), Ok(2 * 86_400_000));
        let paris = TimeZone::get("Europe/Paris").expect("the zone");
        assert_eq!(
            parse_time("1970-01-02", &paris, false),
            Ok(86_400_000 - 3_600_000)
        );
        assert!(parse_time("yesterday", &utc, false)
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn filters_that_do_not_apply_are_refused_with_a_reason() {
        let params = ListParams {
            outcome: Some("accepted".to_owned()),
            ..ListParams::default()
        };
        assert!(params.filters(List::Calls, &TimeZone::UTC).is_err());
        assert!(params.filters(List::Deliveries, &TimeZone::UTC).is_ok());
        let params = ListParams {
            from: Some("2026-03-06".to_owned()),
            to: Some("2026-03-05".to_owned()),
            ..ListParams::default()
        };
        assert!(params.filters(List::Calls, &TimeZone::UTC).is_err());
    }
}
