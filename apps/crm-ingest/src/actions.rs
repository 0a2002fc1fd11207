//! What an operator can do from the console, each a `POST` behind the
//! admin token and the cross-site guard ([`crate::same_origin`]):
//!
//! - `POST /api/inbox/{event_id}/requeue`: a dead or failed row handed to
//!   the worker again now, attempts reset.
//! - `POST /api/inbox/requeue?state=dead`: every dead row; without
//!   `state`, every dead and every failed row.
//! - `POST /api/inbox/{event_id}/replay`: a done event through the
//!   projection again, now. Safe: the projection is idempotent on the
//!   event id, so a row already written is kept as it is.
//! - `POST /api/deliveries/{delivery_id}/replay`: a verified body the log
//!   kept but the inbox never stored (the parser refused it) parsed again
//!   by this build and stored in the inbox, after a fix.
//!
//! Each answers JSON saying what it did, or, to a browser's form post
//! (`Accept: text/html`), a page saying the same with links back.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use kendo_webhooks::Delivery;
use kendo_webhooks_inbox::{Enqueued, RowState};
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::state::AppState;
use crate::storage::{Param, Projection};
use crate::views::path_segment;

/// What an action did: a sentence for people, the JSON for scripts, and
/// where to look next.
struct Done {
    status: StatusCode,
    sentence: String,
    json: Value,
    back: String,
}

impl Done {
    fn answer(self, headers: &HeaderMap) -> Response {
        let wants_html = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        if !wants_html {
            return (self.status, Json(self.json)).into_response();
        }
        let page = crate::views::detail::shell(
            "Done",
            html! {
                h1 { (if self.status.is_success() { "Done" } else { "Not done" }) }
                p.result role="status" { (self.sentence) }
                p { a href=(self.back) { "Back" } " · " a href="/" { "Dashboard" } }
            },
        );
        (self.status, Html(page)).into_response()
    }
}

/// The query string of `POST /api/inbox/requeue`.
#[derive(Debug, Default, Deserialize)]
pub struct RequeueQuery {
    /// `dead`; absent: dead and failed rows.
    state: Option<String>,
}

/// `POST /api/inbox/requeue[?state=dead]`.
pub async fn requeue_all(
    State(state): State<AppState>,
    Query(query): Query<RequeueQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (requeued, which) = match query.state.as_deref() {
        None | Some("") => (state.inbox.requeue_all().await?, "dead and failed"),
        Some("dead") => (state.inbox.requeue_dead().await?, "dead"),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("state={other:?}: expected dead (or no state for dead and failed rows)"),
            ))
        }
    };
    Ok(Done {
        status: StatusCode::OK,
        sentence: format!(
            "{requeued} {which} row{} handed to the worker again, attempts reset.",
            if requeued == 1 { "" } else { "s" }
        ),
        json: match &query.state {
            Some(which) => json!({ "requeued": requeued, "state": which }),
            None => json!({ "requeued": requeued }),
        },
        back: "/".to_owned(),
    }
    .answer(&headers))
}

/// `POST /api/inbox/{event_id}/requeue`: one dead or failed row.
pub async fn requeue(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let back = back_to(&state, &event_id).await;
    if !state.inbox.requeue(&event_id).await? {
        let now = state.inbox.get(&event_id).await?.map(|r| r.state);
        let why = match now {
            Some(row_state) => format!("it is {row_state}, not dead or failed"),
            None => "no inbox row has this event id".to_owned(),
        };
        return Ok(Done {
            status: StatusCode::NOT_FOUND,
            sentence: format!("Nothing requeued: {why}."),
            json: json!({ "error": format!("event {event_id:?} was not requeued: {why}") }),
            back,
        }
        .answer(&headers));
    }
    Ok(Done {
        status: StatusCode::OK,
        sentence: format!(
            "Event {event_id} handed to the worker again, attempts reset; it is projected in a moment."
        ),
        json: json!({ "requeued": event_id }),
        back,
    }
    .answer(&headers))
}

/// `POST /api/inbox/{event_id}/replay`: a done event through the
/// projection again.
pub async fn replay_done(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let back = back_to(&state, &event_id).await;
    let row = state.inbox.get(&event_id).await?;
    let Some(row) = row.filter(|r| r.state == RowState::Done) else {
        return Ok(Done {
            status: StatusCode::NOT_FOUND,
            sentence: "Nothing replayed: no done inbox row has this event id (requeue a dead or \
                       failed one instead)."
                .to_owned(),
            json: json!({ "error": format!("no done inbox row has event id {event_id:?}") }),
            back,
        }
        .answer(&headers));
    };
    let delivery = row.delivery().map_err(|reason| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the stored body no longer parses ({reason}); it cannot be replayed"),
        )
    })?;
    let result = state
        .storage
        .project(&delivery)
        .await
        .map_err(ApiError::from)?;
    let written = match result {
        Projection::Call => "calls",
        Projection::Training => "trainings",
        Projection::Ignored => "nothing (this app keeps no table for this event)",
    };
    Ok(Done {
        status: StatusCode::OK,
        sentence: format!(
            "Event {event_id} replayed through the projection: {written}. A row already written \
             was kept as it was (the projection is idempotent)."
        ),
        json: json!({ "replayed": event_id, "projection": written }),
        back,
    }
    .answer(&headers))
}

/// `POST /api/deliveries/{delivery_id}/replay`: the kept body parsed again
/// and stored in the inbox.
pub async fn replay_logged(
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let back = format!("/deliveries/{}", path_segment(&delivery_id));
    let rows = state
        .storage
        .select(
            "could not read the delivery log",
            "SELECT body, headers FROM deliveries
             WHERE delivery_id = $1 AND body IS NOT NULL ORDER BY seq DESC LIMIT 1",
            vec![Param::Text(delivery_id.clone())],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Done {
            status: StatusCode::NOT_FOUND,
            sentence: "Nothing replayed: the log keeps no verified body for this delivery."
                .to_owned(),
            json: json!({
                "error": format!("the log keeps no verified body for delivery {delivery_id:?}")
            }),
            back,
        }
        .answer(&headers));
    };
    let body = row[0].text().unwrap_or_default();
    let event = row[1]
        .text()
        .and_then(|h| serde_json::from_str::<Value>(&h).ok())
        .and_then(|h| h["x-kendo-event"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let delivery = match Delivery::parse(body.into_bytes(), &delivery_id, &event) {
        Ok(delivery) => delivery,
        Err(reason) => return Ok(Done {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            sentence: format!(
                "Not replayed: this build still refuses the body ({reason}). Deploy a fix, \
                     then replay again."
            ),
            json: json!({ "error": format!("still refused: {reason}"), "reason": reason.as_str() }),
            back,
        }
        .answer(&headers)),
    };
    let event_id = delivery.event_id().to_owned();
    let enqueued = state.inbox.enqueue(&delivery).await?;
    let sentence = match enqueued {
        Enqueued::Stored => {
            format!("Stored in the inbox as event {event_id}; the worker projects it in a moment.")
        }
        Enqueued::Duplicate => {
            format!("Event {event_id} is already in the inbox; nothing changed.")
        }
    };
    Ok(Done {
        status: StatusCode::OK,
        sentence,
        json: json!({ "replayed": delivery_id, "eventId": event_id, "inbox": enqueued.as_str() }),
        back,
    }
    .answer(&headers))
}

/// The page of the delivery that brought `event_id`, else the dashboard.
async fn back_to(state: &AppState, event_id: &str) -> String {
    match state.inbox.get(event_id).await {
        Ok(Some(row)) => format!("/deliveries/{}", path_segment(&row.delivery_id)),
        _ => "/".to_owned(),
    }
}
