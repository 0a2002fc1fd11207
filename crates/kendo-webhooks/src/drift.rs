//! Schema drift: how a known event's `data` differs from the fields this
//! crate types.
//!
//! The typed parse is lenient on purpose (an `aiScore` of `"abc"` reads as
//! `None`, unknown fields are ignored), so that a change on Kendo's side
//! never costs a delivery. Leniency hides the change, though: this reports
//! it. [`Delivery::schema_drift`](crate::Delivery::schema_drift) compares the raw `data` with the fields of
//! [`CallUploaded`](crate::CallUploaded) and
//! [`AiTrainingCompleted`](crate::AiTrainingCompleted): a field missing (or
//! `null`), of another type, or new. It is computed on demand from the raw
//! body, never on the request path unless the `metrics` or `tracing`
//! feature asks for it.
//!
//! ```
//! use kendo_webhooks::{Delivery, DriftKind};
//!
//! let body = r#"{"id":"evt_1","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z",
//!   "data":{"callId":"c1","agentId":"a1","agentName":"Ada","userId":"u1","teamMemberUserId":"m1",
//!           "duration":245.5,"aiScore":"abc","timestamp":"2026-03-05T12:00:00Z","sentiment":"positive"}}"#;
//! let delivery = Delivery::parse(body, "dlv_1", "call.uploaded")?;
//! let drift = delivery.schema_drift();
//! assert_eq!(drift.len(), 2);
//! assert_eq!((drift[0].field.as_str(), drift[0].kind), ("aiScore", DriftKind::OtherType));
//! assert_eq!(drift[0].example.as_deref(), Some(r#""abc""#));
//! assert_eq!((drift[1].field.as_str(), drift[1].kind), ("sentiment", DriftKind::New));
//! # Ok::<(), kendo_webhooks::Rejection>(())
//! ```

use serde_json::{Map, Value};

use crate::payload::{AI_TRAINING_COMPLETED, CALL_UPLOADED};

/// How one field differs from what this crate expects.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// A documented field is absent or `null`.
    Missing,
    /// A documented field holds another type (an `aiScore` that is not a
    /// number, nor a string holding one).
    OtherType,
    /// A field this crate does not know.
    New,
}

impl DriftKind {
    /// `missing`, `other_type` or `new`: a stable label for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::OtherType => "other_type",
            Self::New => "new",
        }
    }
}

/// One field of a delivery's `data` that differs from the typed schema.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDrift {
    /// The field's name in `data` (at most 64 bytes; longer names are cut).
    pub field: String,
    /// How it differs.
    pub kind: DriftKind,
    /// The value as sent, as JSON (at most 80 bytes), for `OtherType` and
    /// `New`; `None` for `Missing`.
    pub example: Option<String>,
}

/// At most this many drifted fields are reported per delivery.
pub const MAX_DRIFTED_FIELDS: usize = 16;
const MAX_FIELD_LEN: usize = 64;
const MAX_EXAMPLE_LEN: usize = 80;

#[derive(Clone, Copy)]
enum Expected {
    /// A string.
    Text,
    /// A number, or a string holding one (Kendo sends `aiScore` so).
    Number,
    /// `true` or `false`.
    Flag,
}

/// The documented fields both known events share, beside their own id
/// (`callId`, `trainingId`).
const SHARED_FIELDS: &[(&str, Expected)] = &[
    ("agentId", Expected::Text),
    ("agentName", Expected::Text),
    ("userId", Expected::Text),
    ("teamMemberUserId", Expected::Text),
    ("duration", Expected::Number),
    ("aiScore", Expected::Number),
    ("timestamp", Expected::Text),
];

/// Optional fields: neither missing when absent nor new when present.
const OPTIONAL_FIELDS: &[(&str, Expected)] = &[("_isTest", Expected::Flag)];

/// The drift of a body whose event is `event_name` (see
/// [`Delivery::schema_drift`](crate::Delivery::schema_drift), which keeps it once computed).
pub(crate) fn schema_drift_of(event_name: &str, body: &[u8]) -> Vec<FieldDrift> {
    let id = match event_name {
        CALL_UPLOADED => "callId",
        AI_TRAINING_COMPLETED => "trainingId",
        _ => return Vec::new(),
    };
    let Some(data) = data_of(body) else {
        return Vec::new();
    };
    drift_of(&data, id)
}

fn data_of(body: &[u8]) -> Option<Map<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        data: Map<String, Value>,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.data)
}

fn drift_of(data: &Map<String, Value>, id: &str) -> Vec<FieldDrift> {
    let own = [(id, Expected::Text)];
    let expected = || own.iter().chain(SHARED_FIELDS);
    let mut found = Vec::new();
    for (name, kind) in expected() {
        match data.get(*name) {
            None | Some(Value::Null) => found.push(FieldDrift {
                field: (*name).to_owned(),
                kind: DriftKind::Missing,
                example: None,
            }),
            Some(value) if !fits(*kind, value) => {
                found.push(drifted(name, DriftKind::OtherType, value))
            }
            Some(_) => {}
        }
    }
    for (name, value) in data {
        let known = expected().any(|(field, _)| field == name);
        match OPTIONAL_FIELDS.iter().find(|(field, _)| field == name) {
            Some((_, kind)) if !fits(*kind, value) => {
                found.push(drifted(name, DriftKind::OtherType, value));
            }
            Some(_) => {}
            None if !known => found.push(drifted(name, DriftKind::New, value)),
            None => {}
        }
    }
    found.truncate(MAX_DRIFTED_FIELDS);
    found
}

fn fits(expected: Expected, value: &Value) -> bool {
    match (expected, value) {
        (Expected::Text, Value::String(_)) | (Expected::Flag, Value::Bool(_)) => true,
        (Expected::Number, Value::Number(_)) => true,
        (Expected::Number, Value::String(s)) => s.trim().parse::<f64>().is_ok_and(f64::is_finite),
        _ => false,
    }
}

fn drifted(name: &str, kind: DriftKind, value: &Value) -> FieldDrift {
    FieldDrift {
        field: cut(name, MAX_FIELD_LEN),
        kind,
        example: Some(cut(&value.to_string(), MAX_EXAMPLE_LEN)),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Delivery;

    fn drift(data: &str) -> Vec<(String, DriftKind, Option<String>)> {
        let body = format!(
            r#"{{"id":"evt_1","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{data}}}"#
        );
        Delivery::parse(body, "dlv_1", "call.uploaded")
            .unwrap()
            .schema_drift()
            .iter()
            .map(|d| (d.field.clone(), d.kind, d.example.clone()))
            .collect()
    }

    const FULL: &str = r#""callId":"c1","agentId":"a1","agentName":"Ada","userId":"u1","teamMemberUserId":"m1","duration":245.5,"aiScore":"87","timestamp":"2026-03-05T12:00:00Z""#;

    #[test]
    fn the_documented_example_has_no_drift() {
        assert!(drift(&format!("{{{FULL}}}")).is_empty());
        assert!(drift(&format!("{{{FULL},\"_isTest\":true}}")).is_empty());
        // A number score (not a string) is still a number.
        let numeric = FULL.replace(r#""aiScore":"87""#, r#""aiScore":87"#);
        assert!(drift(&format!("{{{numeric}}}")).is_empty());
    }

    #[test]
    fn missing_null_other_type_and_new_fields_are_reported() {
        let data = r#"{"callId":"c1","agentId":null,"agentName":7,"userId":"u1","teamMemberUserId":"m1","duration":"long","aiScore":"abc","timestamp":"t","_isTest":"yes","sentiment":{"score":0.9}}"#;
        assert_eq!(
            drift(data),
            vec![
                ("agentId".to_owned(), DriftKind::Missing, None),
                (
                    "agentName".to_owned(),
                    DriftKind::OtherType,
                    Some("7".to_owned())
                ),
                (
                    "duration".to_owned(),
                    DriftKind::OtherType,
                    Some(r#""long""#.to_owned())
                ),
                (
                    "aiScore".to_owned(),
                    DriftKind::OtherType,
                    Some(r#""abc""#.to_owned())
                ),
                (
                    "_isTest".to_owned(),
                    DriftKind::OtherType,
                    Some(r#""yes""#.to_owned())
                ),
                (
                    "sentiment".to_owned(),
                    DriftKind::New,
                    Some(r#"{"score":0.9}"#.to_owned())
                ),
            ]
        );
    }

    #[test]
    fn long_names_and_values_are_cut_and_the_list_is_bounded() {
        let many: Vec<String> = (0..40).map(|i| format!(r#""extra_{i}":{i}"#)).collect();
        let long_name = "a".repeat(200); // sorts before `extra_*`
        let long_value = "é".repeat(100);
        let data = format!(
            r#"{{{FULL},"{long_name}":"{long_value}",{}}}"#,
            many.join(",")
        );
        let found = drift(&data);
        assert_eq!(found.len(), MAX_DRIFTED_FIELDS);
        assert_eq!(found[0].0.len(), MAX_FIELD_LEN);
        let example = found[0].2.as_deref().unwrap();
        assert!(example.len() <= MAX_EXAMPLE_LEN && example.starts_with("\"é"));
    }

    #[test]
    fn unknown_events_have_no_schema() {
        let body =
            r#"{"id":"evt_1","event":"call.summarized","created_at":"x","data":{"anything":1}}"#;
        let delivery = Delivery::parse(body, "dlv_1", "call.summarized").unwrap();
        assert!(delivery.schema_drift().is_empty());
    }
}
