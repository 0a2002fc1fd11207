//! One delivery, whole: `GET /api/deliveries/{delivery_id}` (JSON) and
//! `GET /deliveries/{delivery_id}` (the page, [`crate::views::detail`]).
//!
//! Everything the app knows about one delivery id, read from the delivery
//! log (every attempt, verified or not, and the raw body, headers and
//! answer of the verified ones), the inbox (its state, attempts, last
//! error and next try) and the projection (the row written to `calls` or
//! `trainings`). Queries are written once for both backends, through
//! [`Storage::select`], on indexes of the delivery and event ids.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use kendo_webhooks_inbox::{Inbox, StoredDelivery};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::state::AppState;
use crate::storage::{format_ms, Cell, Param, Storage};
use crate::views::detail::{Attempt, DeliveryDetail, InboxState};

/// Attempts of one delivery read at most (Kendo makes three).
const ATTEMPTS: usize = 100;

/// Reads one delivery; `None` when the log has no attempt with this id.
pub async fn load(
    storage: &Storage,
    inbox: &Inbox,
    delivery_id: &str,
) -> Result<Option<DeliveryDetail>, ApiError> {
    const WHAT: &str = "could not read the delivery";
    let verified = format!(
        "SELECT received_ms, event_id, event, outcome, reason, status, secret_label, body,
                headers, answer
         FROM deliveries WHERE delivery_id = $1 ORDER BY seq DESC LIMIT {ATTEMPTS}"
    );
    let unverified = format!(
        "SELECT received_ms, reason, status FROM unverified
         WHERE delivery_id = $1 ORDER BY seq DESC LIMIT {ATTEMPTS}"
    );
    let id = || vec![Param::Text(delivery_id.to_owned())];
    let verified = storage.select(WHAT, &verified, id()).await?;
    let unverified = storage.select(WHAT, &unverified, id()).await?;
    if verified.is_empty() && unverified.is_empty() {
        return Ok(None);
    }
    let status = |c: &Cell| c.int().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    // Oldest first; the stable sort below keeps the log's order within
    // one millisecond (a retry can land in the same one).
    let mut attempts: Vec<Attempt> = verified
        .iter()
        .rev()
        .map(|row| Attempt {
            received_ms: row[0].int().unwrap_or(0),
            received_at: format_ms(row[0].int().unwrap_or(0)),
            outcome: row[3].text().unwrap_or_default(),
            reason: row[4].text(),
            status: status(&row[5]),
            verified: true,
        })
        .chain(unverified.iter().rev().map(|row| Attempt {
            received_ms: row[0].int().unwrap_or(0),
            received_at: format_ms(row[0].int().unwrap_or(0)),
            outcome: "rejected".to_owned(),
            reason: row[1].text(),
            status: status(&row[2]),
            verified: false,
        }))
        .collect();
    attempts.sort_by_key(|a| a.received_ms);
    let newest = attempts.last().cloned();
    // The newest verified attempt speaks for the delivery's content; the
    // body is the one of the newest attempt that kept one.
    let first = verified.first();
    let text = |i: usize| first.and_then(|row| row[i].text());
    let json = |i: usize| text(i).and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let event_id = text(1);
    let mut body = verified.iter().find_map(|row| row[7].text());
    let inbox_row = match &event_id {
        Some(event_id) => inbox.get(event_id).await?,
        None => None,
    };
    if body.is_none() {
        body = inbox_row
            .as_ref()
            .map(|row| String::from_utf8_lossy(&row.body).into_owned());
    }
    let projection = match &event_id {
        Some(event_id) => projection(storage, event_id).await?,
        None => None,
    };
    Ok(Some(DeliveryDetail {
        delivery_id: delivery_id.to_owned(),
        event: text(2).or_else(|| inbox_row.as_ref().map(|r| r.event_name.clone())),
        event_id,
        outcome: newest
            .as_ref()
            .map(|a| a.outcome.clone())
            .unwrap_or_default(),
        reason: newest.and_then(|a| a.reason),
        verified: !verified.is_empty(),
        secret_label: text(6),
        body,
        headers: json(8),
        answer: json(9),
        attempts,
        inbox: inbox_row.as_ref().map(inbox_state),
        projection,
    }))
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn inbox_state(row: &StoredDelivery) -> InboxState {
    let state = row.state.to_string();
    InboxState {
        next_try: (state == "failed").then(|| format_ms(unix_ms(row.next_at))),
        state,
        attempts: row.attempts,
        last_error: row.last_error.clone(),
        received_at: format_ms(unix_ms(row.received_at)),
    }
}

/// The row the projection wrote for `event_id`, with the API's field
/// names, and its table.
pub async fn projection(storage: &Storage, event_id: &str) -> Result<Option<Value>, ApiError> {
    for (table, id, id_field) in [
        ("calls", "call_id", "callId"),
        ("trainings", "training_id", "trainingId"),
    ] {
        let sql = format!(
            "SELECT {id}, agent_id, agent_name, user_id, team_member_user_id, duration,
                    ai_score, timestamp, is_test, received_ms
             FROM {table} WHERE event_id = $1"
        );
        let rows = storage
            .select(
                "could not read the projection",
                &sql,
                vec![Param::Text(event_id.to_owned())],
            )
            .await?;
        if let Some(row) = rows.first() {
            let real = |c: &Cell| c.real().map_or(Value::Null, Value::from);
            let text = |c: &Cell| c.text().map_or(Value::Null, Value::from);
            return Ok(Some(serde_json::json!({
                "table": table,
                "row": {
                    "eventId": event_id,
                    id_field: text(&row[0]),
                    "agentId": text(&row[1]),
                    "agentName": text(&row[2]),
                    "userId": text(&row[3]),
                    "teamMemberUserId": text(&row[4]),
                    "duration": real(&row[5]),
                    "aiScore": real(&row[6]),
                    "timestamp": text(&row[7]),
                    "isTest": row[8].int().unwrap_or(0) != 0,
                    "receivedAt": format_ms(row[9].int().unwrap_or(0)),
                },
            })));
        }
    }
    Ok(None)
}

fn not_found(delivery_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no delivery {delivery_id:?} in the delivery log (it keeps the newest CRM_LOG_KEEP \
             entries; find ids with GET /api/deliveries?q=)"
        ),
    )
}

/// `GET /api/deliveries/{delivery_id}`: the delivery as JSON; 404 with a
/// JSON error for an id the log does not hold.
pub async fn api_delivery(
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
) -> Result<Response, ApiError> {
    match load(&state.storage, &state.inbox, &delivery_id).await? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(not_found(&delivery_id)),
    }
}

/// `GET /deliveries/{delivery_id}`: the delivery's page.
pub async fn delivery_page(
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
) -> Result<Response, ApiError> {
    match load(&state.storage, &state.inbox, &delivery_id).await? {
        Some(detail) => {
            Ok(Html(crate::views::detail::render(&detail, &state.time_zone)).into_response())
        }
        None => Ok((
            StatusCode::NOT_FOUND,
            Html(crate::views::detail::not_found(&delivery_id)),
        )
            .into_response()),
    }
}
