//! Find anything: the lists `/api/calls`, `/api/trainings` and
//! `/api/deliveries` with their filters, shared by the JSON pages, the
//! CSV export ([`crate::export`]) and the dashboard's search box.
//!
//! - `q`: a case-insensitive substring of any id, the agent's id or name,
//!   the user or team member (calls, trainings); of the ids, event,
//!   outcome, reason or raw body (deliveries). From three characters on it
//!   reads a trigram index: SQLite's FTS5 `trigram` tables holding rowids
//!   only, Postgres' `pg_trgm` GIN index on the same text (when the
//!   extension is available). Shorter text scans, newest first.
//! - `from`, `to`: RFC 3339 (`2026-03-05T12:00:00Z`) or a date
//!   (`2026-03-05`, the whole day in `CRM_TIME_ZONE`), on when the row
//!   was received; both inclusive.
//! - `test=exclude|only|include` (calls and trainings, default `exclude`);
//!   `event`, `outcome`, `reason` and `verified=true|false` (deliveries:
//!   `verified=false` lists the unverified attempts instead of the log).
//!
//! A filter that does not apply to a list is refused with 400, as is any
//! value that does not parse, with a sentence saying what was expected.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::routes::{ApiError, AppState, DEFAULT_LIMIT, MAX_LIMIT};
use crate::storage::{
    format_ms, CallRow, Cell, DeliveryRow, Param, Storage, StorageError, TestFilter, TrainingRow,
};
use crate::views::path_segment;

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
    carried: Vec<(&'static str, String)>,
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

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
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
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(value) => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "limit={value:?}: expected a number from 1 to {MAX_LIMIT}"
                    )))
                }
            },
        };
        let before = match &self.cursor {
            None => None,
            Some(value) => Some(value.parse::<i64>().map_err(|_| {
                bad(format!(
                    "cursor={value:?}: use the cursor from the Link header"
                ))
            })?),
        };
        Ok((limit, before))
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

/// An unverified attempt (`/api/deliveries?verified=false`): its
/// signature did not verify, so its delivery id is a claim, not a fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedRow {
    /// `X-Kendo-Delivery-Id` as sent (unverified).
    pub delivery_id: Option<String>,
    /// Always `rejected`.
    pub outcome: String,
    /// Why (`invalid_signature`, `missing_signature`, …).
    pub reason: String,
    /// The status answered.
    pub status: u16,
    /// Always `false`.
    pub verified: bool,
    /// When it arrived (RFC 3339, UTC).
    pub received_at: String,
}

/// A page of one list: `(seq, row)`, newest first.
pub type Found<T> = Vec<(i64, T)>;

/// Adds the condition of `q` on `text` (a [`crate::search_text!`]
/// expression) of `table`.
fn add_q(conditions: &mut Conditions, storage: &Storage, table: &str, text: &str, q: &str) {
    if storage.is_postgres() {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        conditions.add(
            format!("lower({text}) LIKE $? ESCAPE '\\'"),
            Some(Param::Text(pattern)),
        );
    } else if q.chars().count() >= 3 {
        // A phrase of trigrams: the substring, case-insensitive.
        conditions.drive_by_trigrams(table, format!("\"{}\"", q.replace('"', "\"\"")));
    } else {
        // Too short for trigrams: a scan, newest first, that stops after a
        // page (SQLite's LIKE ignores ASCII case).
        let pattern = format!("%{}%", like_escape(q));
        conditions.add(
            format!("{text} LIKE $? ESCAPE '\\'"),
            Some(Param::Text(pattern)),
        );
    }
}

/// `text` matched literally by `LIKE … ESCAPE '\'`.
pub fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One list query's `FROM`, conditions (joined with `AND`, `$?` numbered
/// from `$2`; `$1` is the cursor) and order.
struct Conditions {
    /// The rows' source: the table, or (SQLite, a search of three
    /// characters or more) its trigram index driving the table.
    from: String,
    /// The column the cursor and the order are on.
    seq: String,
    sql: Vec<String>,
    params: Vec<Param>,
}

/// A query's parts, numbered.
struct Parts {
    from: String,
    conditions: String,
    order: String,
    params: Vec<Param>,
}

impl Conditions {
    fn new(table: &str, before: Option<i64>) -> Self {
        Self {
            from: table.to_owned(),
            seq: "seq".to_owned(),
            sql: Vec::new(),
            params: vec![Param::Int(before.unwrap_or(i64::MAX))],
        }
    }

    /// Reads the matches from `table`'s FTS5 trigram index, newest first,
    /// each joined to its row: the index drives (`CROSS JOIN` keeps it the
    /// outer loop) and consumes the order and the cursor, so a common word
    /// stops after one page and a rare one reads only its matches.
    fn drive_by_trigrams(&mut self, table: &str, phrase: String) {
        self.from =
            format!("{table}_search CROSS JOIN {table} ON {table}.seq = {table}_search.rowid");
        self.seq = format!("{table}_search.rowid");
        self.add(
            format!("{table}_search MATCH $?"),
            Some(Param::Text(phrase)),
        );
    }

    fn add(&mut self, sql: impl Into<String>, param: Option<Param>) {
        let mut sql = sql.into();
        if let Some(param) = param {
            self.params.push(param);
            sql = sql.replace("$?", &format!("${}", self.params.len()));
        }
        self.sql.push(sql);
    }

    fn finish(mut self) -> Parts {
        self.sql.insert(0, format!("{} < $1", self.seq));
        Parts {
            from: self.from,
            conditions: self.sql.join(" AND "),
            order: format!("{} DESC", self.seq),
            params: self.params,
        }
    }
}

fn common(
    storage: &Storage,
    table: &str,
    text: &str,
    filters: &Filters,
    before: Option<i64>,
) -> Conditions {
    let mut conditions = Conditions::new(table, before);
    if let Some(q) = &filters.q {
        add_q(&mut conditions, storage, table, text, q);
    }
    if let Some(from) = filters.from_ms {
        conditions.add("received_ms >= $?", Some(Param::Int(from)));
    }
    if let Some(to) = filters.to_ms {
        conditions.add("received_ms < $?", Some(Param::Int(to)));
    }
    conditions
}

fn text(cells: &[Cell], i: usize) -> Option<String> {
    cells.get(i).and_then(Cell::text)
}

fn int(cells: &[Cell], i: usize) -> i64 {
    cells.get(i).and_then(Cell::int).unwrap_or(0)
}

fn real(cells: &[Cell], i: usize) -> Option<f64> {
    cells.get(i).and_then(Cell::real)
}

/// A page of calls or trainings, newest first: `(seq, row)`.
async fn projected(
    storage: &Storage,
    table: &'static str,
    id: &'static str,
    text_sql: &'static str,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<Vec<Cell>>, StorageError> {
    let mut conditions = common(storage, table, text_sql, filters, before);
    match filters.test {
        TestFilter::Exclude => conditions.add("is_test = $?", Some(Param::Bool(false))),
        TestFilter::Only => conditions.add("is_test = $?", Some(Param::Bool(true))),
        TestFilter::Include => {}
    }
    let Parts {
        from,
        conditions,
        order,
        params,
    } = conditions.finish();
    let sql = format!(
        "SELECT seq, event_id, {id}, agent_id, agent_name, user_id, team_member_user_id,
                duration, ai_score, timestamp, is_test, received_ms
         FROM {from} WHERE {conditions} ORDER BY {order} LIMIT {limit}"
    );
    let rows = storage.select("could not search", &sql, params).await?;
    Ok(rows.into_iter().map(|row| (int(&row, 0), row)).collect())
}

/// A page of calls matching `filters`.
pub async fn calls(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<CallRow>, StorageError> {
    let rows = projected(
        storage,
        "calls",
        "call_id",
        crate::search_text!(call_id),
        filters,
        before,
        limit,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, r)| {
            (
                seq,
                CallRow {
                    event_id: text(&r, 1).unwrap_or_default(),
                    call_id: text(&r, 2).unwrap_or_default(),
                    agent_id: text(&r, 3),
                    agent_name: text(&r, 4),
                    user_id: text(&r, 5),
                    team_member_user_id: text(&r, 6),
                    duration: real(&r, 7),
                    ai_score: real(&r, 8),
                    timestamp: text(&r, 9),
                    is_test: int(&r, 10) != 0,
                    received_at: format_ms(int(&r, 11)),
                },
            )
        })
        .collect())
}

/// A page of trainings matching `filters`.
pub async fn trainings(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<TrainingRow>, StorageError> {
    let rows = projected(
        storage,
        "trainings",
        "training_id",
        crate::search_text!(training_id),
        filters,
        before,
        limit,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, r)| {
            (
                seq,
                TrainingRow {
                    event_id: text(&r, 1).unwrap_or_default(),
                    training_id: text(&r, 2).unwrap_or_default(),
                    agent_id: text(&r, 3),
                    agent_name: text(&r, 4),
                    user_id: text(&r, 5),
                    team_member_user_id: text(&r, 6),
                    duration: real(&r, 7),
                    ai_score: real(&r, 8),
                    timestamp: text(&r, 9),
                    is_test: int(&r, 10) != 0,
                    received_at: format_ms(int(&r, 11)),
                },
            )
        })
        .collect())
}

/// A page of the verified delivery log matching `filters`.
pub async fn deliveries(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<DeliveryRow>, StorageError> {
    let mut conditions = common(
        storage,
        "deliveries",
        crate::search_text!(deliveries),
        filters,
        before,
    );
    for (column, value) in [
        ("event", &filters.event),
        ("outcome", &filters.outcome),
        ("reason", &filters.reason),
    ] {
        if let Some(value) = value {
            conditions.add(format!("{column} = $?"), Some(Param::Text(value.clone())));
        }
    }
    let Parts {
        from,
        conditions,
        order,
        params,
    } = conditions.finish();
    let sql = format!(
        "SELECT seq, delivery_id, event_id, event, outcome, reason, status, secret_label,
                latency_ms, received_ms
         FROM {from} WHERE {conditions} ORDER BY {order} LIMIT {limit}"
    );
    let rows = storage
        .select("could not search the delivery log", &sql, params)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                int(&r, 0),
                DeliveryRow {
                    delivery_id: text(&r, 1),
                    event_id: text(&r, 2),
                    event: text(&r, 3),
                    outcome: text(&r, 4).unwrap_or_default(),
                    reason: text(&r, 5),
                    status: u16::try_from(int(&r, 6)).unwrap_or(0),
                    secret_label: text(&r, 7),
                    latency_ms: real(&r, 8),
                    received_at: format_ms(int(&r, 9)),
                },
            )
        })
        .collect())
}

/// A page of unverified attempts matching `filters` (a bounded table:
/// `q` scans it).
pub async fn unverified(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<UnverifiedRow>, StorageError> {
    let mut conditions = Conditions::new("unverified", before);
    if let Some(q) = &filters.q {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        conditions.add(
            "lower(COALESCE(delivery_id, '') || ' | ' || reason) LIKE $? ESCAPE '\\'",
            Some(Param::Text(pattern)),
        );
    }
    if let Some(from) = filters.from_ms {
        conditions.add("received_ms >= $?", Some(Param::Int(from)));
    }
    if let Some(to) = filters.to_ms {
        conditions.add("received_ms < $?", Some(Param::Int(to)));
    }
    if let Some(reason) = &filters.reason {
        conditions.add("reason = $?", Some(Param::Text(reason.clone())));
    }
    if filters.outcome.as_deref().is_some_and(|o| o != "rejected") || filters.event.is_some() {
        // Unverified attempts are all rejected, and have no event.
        return Ok(Vec::new());
    }
    let Parts {
        from,
        conditions,
        order,
        params,
    } = conditions.finish();
    let sql = format!(
        "SELECT seq, delivery_id, reason, status, received_ms
         FROM {from} WHERE {conditions} ORDER BY {order} LIMIT {limit}"
    );
    let rows = storage
        .select("could not read the unverified attempts", &sql, params)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                int(&r, 0),
                UnverifiedRow {
                    delivery_id: text(&r, 1),
                    outcome: "rejected".to_owned(),
                    reason: text(&r, 2).unwrap_or_default(),
                    status: u16::try_from(int(&r, 3)).unwrap_or(0),
                    verified: false,
                    received_at: format_ms(int(&r, 4)),
                },
            )
        })
        .collect())
}

/// One page as JSON, with `Link: <…>; rel="next"` (every filter carried)
/// when there are more rows.
fn page<T: Serialize>(list: List, filters: &Filters, limit: usize, mut rows: Found<T>) -> Response {
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| *seq)
    });
    let rows: Vec<T> = rows.into_iter().map(|(_, row)| row).collect();
    let mut response = Json(rows).into_response();
    if let Some(Some(next)) = next {
        let mut link = format!("<{}?limit={limit}", list.path());
        for (key, value) in &filters.carried {
            link.push_str(&format!("&{key}={}", path_segment(value)));
        }
        link.push_str(&format!("&cursor={next}>; rel=\"next\""));
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// The list `base` answered for `params`: a JSON page, or every matching
/// row as CSV (`format=csv`).
async fn answer(state: &AppState, base: List, params: ListParams) -> Result<Response, ApiError> {
    let list = params.list(base)?;
    let filters = params.filters(list, &state.time_zone)?;
    // Checked for CSV too (which ignores them: it streams every row).
    let (limit, before) = params.page()?;
    match params.format.as_deref() {
        None | Some("json") => {}
        Some("csv") => return Ok(crate::export::csv(state.storage.clone(), list, filters)),
        Some(other) => return Err(bad(format!("format={other:?}: expected json or csv"))),
    }
    let storage = &state.storage;
    Ok(match list {
        List::Calls => page(
            list,
            &filters,
            limit,
            calls(storage, &filters, before, limit + 1).await?,
        ),
        List::Trainings => page(
            list,
            &filters,
            limit,
            trainings(storage, &filters, before, limit + 1).await?,
        ),
        List::Deliveries => page(
            list,
            &filters,
            limit,
            deliveries(storage, &filters, before, limit + 1).await?,
        ),
        List::Unverified => page(
            list,
            &filters,
            limit,
            unverified(storage, &filters, before, limit + 1).await?,
        ),
    })
}

/// `GET /api/calls`: calls, newest first, filtered.
pub async fn api_calls(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    answer(&state, List::Calls, params).await
}

/// `GET /api/trainings`: trainings, newest first, filtered.
pub async fn api_trainings(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    answer(&state, List::Trainings, params).await
}

/// `GET /api/deliveries`: the verified delivery log (or, with
/// `verified=false`, the unverified attempts), newest first, filtered.
pub async fn api_deliveries(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    answer(&state, List::Deliveries, params).await
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
    fn like_escape_keeps_wildcards_literal() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
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
