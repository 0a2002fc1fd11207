//! What the delivery log keeps of one verified request besides its
//! outcome: the raw body as received, the headers (secrets shortened) and
//! the answer the app gave, so an operator can open any delivery, see
//! what Kendo sent and what it was told, and replay it after a fix.
//!
//! Only verified requests are kept this way: an unverified body may come
//! from anyone and is never stored.

use axum::http::HeaderMap;
use kendo_webhooks::{Outcome, Report, DUPLICATE_HEADER, REJECTION_HEADER};
use serde_json::{Map, Value};

/// Characters of a signature kept: enough to tell two apart, too few to
/// be of use to anyone else.
const SIGNATURE_KEPT: usize = 12;
/// Headers whose values are never kept: credentials a proxy may add.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];
/// Headers of the answer worth showing.
const ANSWER_HEADERS: &[&str] = &["x-kendo-inbox", "retry-after"];

/// The verified body of a report as text (invalid UTF-8 shown as U+FFFD:
/// a body that is not UTF-8 was refused, and is kept to be seen).
pub fn body(report: &Report<'_>) -> Option<String> {
    report
        .verified_body()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// The event id and name of a verified delivery refused for its content
/// (no parsed delivery, so the report has neither): read leniently from
/// the body's `id` and `event`, else the `X-Kendo-Event` header, so the log
/// says which event it was. Only for refused bodies: a rare, small parse.
pub fn refused_ids(report: &Report<'_>) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: Option<serde_json::Value>,
        event: Option<serde_json::Value>,
    }
    if report.delivery().is_some() || !report.is_verified() {
        return (None, None);
    }
    let envelope = report
        .verified_body()
        .and_then(|body| serde_json::from_slice::<Envelope>(body).ok());
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s),
        _ => None,
    };
    let (id, event) = envelope.map_or((None, None), |e| (text(e.id), text(e.event)));
    let header = report
        .request_headers()
        .and_then(|h| h.get("x-kendo-event"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (id, event.or(header))
}

/// The request's headers as a JSON object (`name: value`, repeated names
/// joined with `, `), the signature shortened and credentials withheld.
pub fn headers(report: &Report<'_>) -> Option<String> {
    report
        .request_headers()
        .map(|headers| headers_json(headers).to_string())
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut object = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = String::from_utf8_lossy(value.as_bytes());
        let shown = if SECRET_HEADERS.contains(&name) {
            "(withheld)".to_owned()
        } else if name == "x-kendo-signature" {
            shorten(&value)
        } else {
            value.into_owned()
        };
        match object.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&shown);
            }
            _ => {
                object.insert(name.to_owned(), Value::String(shown));
            }
        }
    }
    Value::Object(object)
}

/// A signature cut to its first characters and an ellipsis.
pub fn shorten(signature: &str) -> String {
    let mut chars = signature.chars();
    let kept: String = chars.by_ref().take(SIGNATURE_KEPT).collect();
    if chars.next().is_some() {
        format!("{kept}…")
    } else {
        kept
    }
}

/// The answer the app gave, as a JSON object: `status`, the headers that
/// say what happened (`x-kendo-inbox`, the rejection's name, the layer's
/// duplicate header) and, for a rejection, the text the layer answered with.
pub fn answer(report: &Report<'_>, status: u16) -> String {
    let mut object = Map::new();
    object.insert("status".to_owned(), status.into());
    let mut headers = Map::new();
    if let Some(response) = report.response_headers() {
        for name in ANSWER_HEADERS {
            if let Some(value) = response.get(*name).and_then(|v| v.to_str().ok()) {
                headers.insert((*name).to_owned(), value.into());
            }
        }
    }
    match report.outcome() {
        Outcome::Rejected(reason) => {
            headers.insert(REJECTION_HEADER.as_str().to_owned(), reason.as_str().into());
            object.insert("body".to_owned(), reason.to_string().into());
        }
        Outcome::Duplicate => {
            headers.insert(DUPLICATE_HEADER.as_str().to_owned(), "true".into());
        }
        _ => {}
    }
    object.insert("headers".to_owned(), Value::Object(headers));
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_signature_is_shortened_and_credentials_withheld() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-kendo-signature",
            HeaderValue::from_static("sha256=0123456789abcdef0123456789abcdef"),
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let json = headers_json(&headers);
        assert_eq!(json["x-kendo-signature"], "sha256=01234…");
        assert_eq!(json["authorization"], "(withheld)");
        assert_eq!(json["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
        assert_eq!(shorten("short"), "short");
    }
}
