//! `?format=csv` on `/api/calls`, `/api/trainings` and `/api/deliveries`:
//! every row matching the same filters as the JSON pages, streamed a page
//! at a time (memory stays flat however many rows match), as RFC 4180 CSV
//! written by the `csv` crate. The header row holds the JSON field names.
//!
//! A cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage
//! return) is prefixed with `'`: a spreadsheet would otherwise run it as a
//! formula, and a webhook's fields are written by whoever can reach Kendo
//! (OWASP's "CSV injection"). Numbers are written as numbers, so a
//! negative score stays a number.

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::search::filters::{Filters, List};
use crate::search::query;
use crate::storage::Storage;

/// Rows read per query while streaming.
const CHUNK: usize = 1_000;

/// The answer: `text/csv`, streamed.
pub fn csv(storage: Storage, list: List, filters: Filters) -> Response {
    let name = match list {
        List::Calls => "calls",
        List::Trainings => "trainings",
        List::Deliveries => "deliveries",
        List::Unverified => "unverified-attempts",
    };
    let stream = futures_util::stream::unfold(
        Some((storage, filters, None::<i64>, true)),
        move |state| async move {
            let (storage, filters, before, first) = state?;
            match chunk(&storage, list, &filters, before, first).await {
                Ok((bytes, next)) => {
                    let state = next.map(|next| (storage, filters, Some(next), false));
                    Some((Ok::<_, std::io::Error>(bytes), state))
                }
                Err(error) => {
                    tracing::warn!(%error, "CSV export stopped: a page could not be read");
                    Some((Err(std::io::Error::other(error)), None))
                }
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// One page as CSV (with the header row first), and the cursor of the next
/// page when there may be more.
async fn chunk(
    storage: &Storage,
    list: List,
    filters: &Filters,
    before: Option<i64>,
    first: bool,
) -> Result<(Vec<u8>, Option<i64>), String> {
    fn write<T: Serialize>(
        rows: Vec<(i64, T)>,
        fields: &[&str],
        first: bool,
    ) -> Result<(Vec<u8>, Option<i64>), String> {
        let next = (rows.len() == CHUNK)
            .then(|| rows.last().map(|(seq, _)| *seq))
            .flatten();
        let mut writer = csv::Writer::from_writer(Vec::new());
        if first {
            writer.write_record(fields).map_err(|e| e.to_string())?;
        }
        for (_, row) in rows {
            let value = serde_json::to_value(&row).map_err(|e| e.to_string())?;
            writer
                .write_record(fields.iter().map(|field| cell(&value[*field])))
                .map_err(|e| e.to_string())?;
        }
        let bytes = writer.into_inner().map_err(|e| e.to_string())?;
        Ok((bytes, next))
    }
    let error = |e: crate::storage::StorageError| e.to_string();
    match list {
        List::Calls => write(
            query::calls(storage, filters, before, CHUNK)
                .await
                .map_err(error)?,
            CALL_FIELDS,
            first,
        ),
        List::Trainings => write(
            query::trainings(storage, filters, before, CHUNK)
                .await
                .map_err(error)?,
            TRAINING_FIELDS,
            first,
        ),
        List::Deliveries => write(
            query::deliveries(storage, filters, before, CHUNK)
                .await
                .map_err(error)?,
            DELIVERY_FIELDS,
            first,
        ),
        List::Unverified => write(
            query::unverified(storage, filters, before, CHUNK)
                .await
                .map_err(error)?,
            UNVERIFIED_FIELDS,
            first,
        ),
    }
}

/// The columns of each list, in the JSON rows' order and names.
pub const CALL_FIELDS: &[&str] = &[
    "eventId",
    "callId",
    "agentId",
    "agentName",
    "userId",
    "teamMemberUserId",
    "duration",
    "aiScore",
    "timestamp",
    "isTest",
    "receivedAt",
];
/// As [`CALL_FIELDS`], for trainings.
pub const TRAINING_FIELDS: &[&str] = &[
    "eventId",
    "trainingId",
    "agentId",
    "agentName",
    "userId",
    "teamMemberUserId",
    "duration",
    "aiScore",
    "timestamp",
    "isTest",
    "receivedAt",
];
/// As [`CALL_FIELDS`], for the delivery log.
pub const DELIVERY_FIELDS: &[&str] = &[
    "deliveryId",
    "eventId",
    "event",
    "outcome",
    "reason",
    "status",
    "secretLabel",
    "latencyMs",
    "receivedAt",
];
/// As [`CALL_FIELDS`], for unverified attempts.
pub const UNVERIFIED_FIELDS: &[&str] = &[
    "deliveryId",
    "outcome",
    "reason",
    "status",
    "verified",
    "receivedAt",
];

/// One JSON value as a CSV cell: null empty, numbers and booleans as
/// written, text made inert when a spreadsheet would run it.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => inert(text),
        other => other.to_string(),
    }
}

/// `text`, prefixed with `'` when it begins with a character that makes a
/// spreadsheet read a formula.
pub fn inert(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{CallRow, DeliveryRow, TrainingRow};

    #[test]
    fn formulas_are_made_inert_and_numbers_kept() {
        assert_eq!(inert("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for text in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(inert(text).starts_with('\''), "{text:?}");
        }
        assert_eq!(inert("Ada"), "Ada");
        assert_eq!(cell(&serde_json::json!(-3.5)), "-3.5");
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&serde_json::json!(true)), "true");
    }

    fn keys<T: Serialize>(row: &T) -> Vec<String> {
        let value = serde_json::to_value(row).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        fields.sort();
        fields
    }

    #[test]
    fn the_header_rows_are_the_json_field_names() {
        let call = CallRow {
            event_id: String::new(),
            call_id: String::new(),
            agent_id: None,
            agent_name: None,
            user_id: None,
            team_member_user_id: None,
            duration: None,
            ai_score: None,
            timestamp: None,
            is_test: false,
            received_at: String::new(),
        };
        assert_eq!(keys(&call), sorted(CALL_FIELDS));
        let training = TrainingRow {
            event_id: String::new(),
            training_id: String::new(),
            agent_id: None,
            agent_name: None,
            user_id: None,
            team_member_user_id: None,
            duration: None,
            ai_score: None,
            timestamp: None,
            is_test: false,
            received_at: String::new(),
        };
        assert_eq!(keys(&training), sorted(TRAINING_FIELDS));
        let delivery = DeliveryRow {
            delivery_id: None,
            event_id: None,
            event: None,
            outcome: String::new(),
            reason: None,
            status: 0,
            secret_label: None,
            latency_ms: None,
            received_at: String::new(),
        };
        assert_eq!(keys(&delivery), sorted(DELIVERY_FIELDS));
        let unverified = query::UnverifiedRow {
            delivery_id: None,
            outcome: String::new(),
            reason: String::new(),
            status: 0,
            verified: false,
            received_at: String::new(),
        };
        assert_eq!(keys(&unverified), sorted(UNVERIFIED_FIELDS));
    }
}
