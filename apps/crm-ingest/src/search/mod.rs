//! Find anything: the lists `/api/calls`, `/api/trainings` and
//! `/api/deliveries` with their filters, shared by the JSON pages, the
//! CSV export ([`crate::export`]) and the dashboard's search box.
//!
//! - `q`: a case-insensitive substring of any id, the agent's id or name,
//!   the user or team member (calls, trainings); of the ids, event,
//!   outcome, reason or raw body (deliveries). From three characters on it
//!   reads a trigram index: SQLite's FTS5 `trigram` tables holding rowids
//!   only, Postgres' `pg_trgm` GIN index on the same text (when the
//!   extension is available). Shorter text scans, newest first. SQLite's
//!   index of the delivery log is filled in bulk about once a second
//!   ([`crate::storage::Storage::index_search`]); a search reads the
//!   entries after its end directly, so it misses none.
//! - `from`, `to`: RFC 3339 (`2026-03-05T12:00:00Z`) or a date
//!   (`2026-03-05`, the whole day in `CRM_TIME_ZONE`), on when the row
//!   was received; both inclusive.
//! - `test=exclude|only|include` (calls and trainings, default `exclude`);
//!   `event`, `outcome`, `reason` and `verified=true|false` (deliveries:
//!   `verified=false` lists the unverified attempts instead of the log).
//!
//! A filter that does not apply to a list is refused with 400, as is any
//! value that does not parse, with a sentence saying what was expected.

pub mod filters;
pub mod query;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::api_error::ApiError;
use crate::state::AppState;
use crate::views::path_segment;
use filters::bad;
pub use filters::{parse_time, Filters, List, ListParams, MAX_QUERY};
pub use query::{calls, deliveries, trainings, unverified, Found, UnverifiedRow};

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
