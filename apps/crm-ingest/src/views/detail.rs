//! The page of one delivery (`/deliveries/{id}`): what Kendo sent (the
//! raw body, pretty-printed without re-parsing its numbers, and the
//! headers), what it was told, every attempt, the inbox row and what the
//! projection wrote, with the actions that apply to it.
//!
//! The page's data ([`DeliveryDetail`]) is defined here and filled by the
//! handler ([`crate::detail`]), so the view never imports the handler.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;
use serde_json::Value;

use super::format::{full, path_segment};
use super::STYLE;

/// Everything known about one delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    /// `X-Kendo-Delivery-Id`.
    pub delivery_id: String,
    /// The signed event id, once a body was verified and parsed.
    pub event_id: Option<String>,
    /// The event name (`call.uploaded`, …).
    pub event: Option<String>,
    /// The newest attempt's outcome: `accepted`, `duplicate`, `rejected`
    /// or `failed`.
    pub outcome: String,
    /// The newest attempt's reason (`null` when accepted).
    pub reason: Option<String>,
    /// Whether any attempt carried a valid signature.
    pub verified: bool,
    /// The label of the secret that verified it (`current`, `previous`).
    pub secret_label: Option<String>,
    /// The verified raw body as received, a string (`null` when no attempt
    /// was verified, or the entry predates kept bodies).
    pub body: Option<String>,
    /// The headers received, the signature shortened.
    pub headers: Option<Value>,
    /// The answer given to the newest verified attempt: `status`,
    /// `headers`, and for a rejection its `body`.
    pub answer: Option<Value>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// The event's inbox row, when it was stored (and not purged yet).
    pub inbox: Option<InboxState>,
    /// What the projection wrote, when it did: `{"table": …, "row": …}`.
    pub projection: Option<Value>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it arrived (RFC 3339, UTC).
    pub received_at: String,
    /// Unix milliseconds, for the page.
    #[serde(skip)]
    pub received_ms: i64,
    /// The status answered.
    pub status: u16,
    /// `accepted`, `duplicate`, `rejected` or `failed`.
    pub outcome: String,
    /// Why, when not accepted (`null` when accepted).
    pub reason: Option<String>,
    /// Whether its signature was valid.
    pub verified: bool,
}

/// An event's row in the inbox.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxState {
    /// `pending`, `leased`, `done`, `failed` or `dead`.
    pub state: String,
    /// Times it was handed to the projection.
    pub attempts: u32,
    /// The projection's last error.
    pub last_error: Option<String>,
    /// When a failed row is tried again (RFC 3339), else `null`.
    pub next_try: Option<String>,
    /// When it was committed (RFC 3339).
    pub received_at: String,
}

/// A page around `body`, with the dashboard's style and a way back.
pub(crate) fn shell(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CRM ingest" }
                style { (PreEscaped(STYLE)) (PreEscaped(DETAIL_STYLE)) }
            }
            body {
                p.back { a href="/" { "← Dashboard" } }
                (body)
            }
        }
    }
    .into_string()
}

/// The page for an id the log does not hold.
pub fn not_found(delivery_id: &str) -> String {
    shell(
        "Not found",
        html! {
            h1 { "No delivery " code { (delivery_id) } }
            p {
                "The delivery log keeps the newest entries only (CRM_LOG_KEEP). "
                a href=(format!("/?q={}", path_segment(delivery_id))) { "Search for it" } "."
            }
        },
    )
}

/// The page of one delivery, times in `zone`.
pub fn render(detail: &DeliveryDetail, zone: &jiff::tz::TimeZone) -> String {
    super::format::in_zone(zone, || render_page(detail))
}

fn render_page(detail: &DeliveryDetail) -> String {
    let id = path_segment(&detail.delivery_id);
    let body = html! {
        h1 { "Delivery " code.wrap { (detail.delivery_id) } }
        dl.facts {
            dt { "Event" } dd { (detail.event.as_deref().unwrap_or("–")) }
            dt { "Event id" } dd { code.wrap { (detail.event_id.as_deref().unwrap_or("–")) } }
            dt { "Outcome" } dd {
                span.tag.(detail.outcome) { (detail.outcome) }
                @if let Some(reason) = &detail.reason { " " (reason) }
            }
            dt { "Verified" } dd {
                @match (detail.verified, detail.secret_label.as_deref()) {
                    (true, Some(label)) => { "yes, by the " (label) " secret" }
                    (true, None) => "yes",
                    (false, _) => "no: no attempt carried a valid signature",
                }
            }
        }
        (actions(detail, &id))
        section {
            h2 { "Body as received" }
            @match &detail.body {
                Some(body) => pre.payload { (pretty_json(body)) },
                None => p.muted { "No verified body: an unverified body is never kept." },
            }
        }
        div.split.even {
            section {
                h2 { "Headers received" }
                (object_table(detail.headers.as_ref(), "No headers kept for this delivery."))
            }
            section {
                h2 { "Answer given" }
                @match &detail.answer {
                    Some(answer) => {
                        p { "Status " b { (answer["status"]) } }
                        (object_table(answer.get("headers"), "No headers."))
                        @if let Some(text) = answer.get("body").and_then(Value::as_str) {
                            pre.payload { (text) }
                        }
                    }
                    None => p.muted { "Not kept for this delivery." },
                }
            }
        }
        section {
            h2 { "Attempts" }
            div.scroll { table {
                thead { tr { th { "received" } th { "outcome" } th.num { "status" } th { "reason" } th { "verified" } } }
                tbody {
                    @for attempt in &detail.attempts {
                        tr {
                            td { (full(attempt.received_ms)) }
                            td { span.tag.(attempt.outcome) { (attempt.outcome) } }
                            td.num { (attempt.status) }
                            td { (attempt.reason.as_deref().unwrap_or("")) }
                            td { (if attempt.verified { "yes" } else { "no" }) }
                        }
                    }
                }
            } }
        }
        section {
            h2 { "Inbox" }
            @match &detail.inbox {
                Some(inbox) => dl.facts {
                    dt { "State" } dd { span.tag.(inbox.state) { (inbox.state) } }
                    dt { "Attempts" } dd { (inbox.attempts) }
                    dt { "Last error" } dd { (inbox.last_error.as_deref().unwrap_or("–")) }
                    dt { "Next try" } dd { (inbox.next_try.as_deref().unwrap_or("–")) }
                    dt { "Stored" } dd { (inbox.received_at) }
                },
                None => p.muted {
                    "Not in the inbox: it was refused before it was stored, or done and purged."
                },
            }
        }
        section {
            h2 { "What the projection wrote" }
            @match &detail.projection {
                Some(projection) => {
                    p { "A row of " code { (projection["table"].as_str().unwrap_or("")) } ":" }
                    (object_table(projection.get("row"), ""))
                }
                None => p.muted { "Nothing: no call or training row has this event id." },
            }
        }
    };
    shell(&format!("Delivery {}", detail.delivery_id), body)
}

/// The buttons that apply to this delivery: each is a form posting to the
/// app's own origin.
fn actions(detail: &DeliveryDetail, id: &str) -> Markup {
    let state = detail.inbox.as_ref().map(|i| i.state.as_str());
    let event_id = detail.event_id.as_deref().map(path_segment);
    html! {
        div.actions {
            @if let (Some(event_id), Some("dead" | "failed")) = (&event_id, state) {
                form method="post" action=(format!("/api/inbox/{event_id}/requeue")) {
                    button type="submit" { "Requeue: hand it to the worker again now" }
                }
            }
            @if let (Some(event_id), Some("done")) = (&event_id, state) {
                form method="post" action=(format!("/api/inbox/{event_id}/replay")) {
                    button type="submit" {
                        "Replay through the projection (safe: it is idempotent, a row already written is kept)"
                    }
                }
            }
            @if detail.body.is_some() && detail.inbox.is_none() && detail.verified {
                form method="post" action=(format!("/api/deliveries/{id}/replay")) {
                    button type="submit" {
                        "Replay this body: parse it again and store it in the inbox"
                    }
                }
            }
            a href=(format!("/api/deliveries/{id}")) { "JSON" }
        }
    }
}

/// A JSON object's members as a two-column table.
fn object_table(object: Option<&Value>, empty: &str) -> Markup {
    let members = object.and_then(Value::as_object);
    html! {
        @match members {
            Some(members) if !members.is_empty() => div.scroll { table.kv { tbody {
                @for (name, value) in members {
                    tr {
                        th { (name) }
                        td.wrap { @match value {
                            Value::String(s) => (s),
                            Value::Null => span.muted { "null" },
                            other => (other.to_string()),
                        } }
                    }
                }
            } } },
            _ => p.muted { (empty) },
        }
    }
}

/// `text` re-indented as JSON, two spaces a level, token by token: its
/// numbers and strings are kept exactly as sent (a body refused for a
/// number out of range or nesting too deep still shows as sent). Text
/// that is not JSON comes out changed in whitespace only.
pub fn pretty_json(text: &str) -> String {
    /// Deeper levels are not indented further (the page stays readable).
    const MAX_INDENT: usize = 40;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth.min(MAX_INDENT) {
            out.push_str("  ");
        }
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on one line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                let empty = matches!(out.chars().last(), Some('{' | '['));
                if depth > 0 && !empty {
                    depth -= 1;
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

const DETAIL_STYLE: &str = "
.back{margin:0 0 .5rem}
.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem 1rem;background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:.6rem .9rem;margin:.5rem 0}
.facts dt{color:#5b6472}.facts dd{margin:0;min-width:0;overflow-wrap:anywhere}
.wrap{overflow-wrap:anywhere;white-space:normal}
pre.payload{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:.6rem .8rem;overflow:auto;max-height:32rem;white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
table.kv th{width:1%;white-space:nowrap;background:#fff}
table.kv td{white-space:normal;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
.actions form{margin:0}
.actions button,form.inline button{font:inherit;padding:.35rem .8rem;border:1px solid #2f5fb3;background:#2f5fb3;color:#fff;border-radius:5px;cursor:pointer;white-space:normal;text-align:left}
form.inline{display:inline;margin:0}
form.inline button{padding:.1rem .5rem;font-size:.8rem}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_without_touching_numbers_or_strings() {
        let text = r#"{"a":1e400,"b":[1, 2],"c":{},"d":"x: {\"y\", z}","e":[]}"#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"a\": 1e400,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {},\n  \
             \"d\": \"x: {\\\"y\\\", z}\",\n  \"e\": []\n}"
        );
    }

    #[test]
    fn deep_nesting_and_broken_text_do_not_panic() {
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(pretty_json(&deep).starts_with("[\n  ["));
        assert_eq!(pretty_json("]]]}"), "]]]}");
        assert_eq!(pretty_json("\"unterminated"), "\"unterminated");
    }

    #[test]
    fn hostile_values_are_escaped_on_the_page() {
        let detail = DeliveryDetail {
            delivery_id: "<script>".to_owned(),
            event_id: Some("evt/1?x".to_owned()),
            event: None,
            outcome: "accepted".to_owned(),
            reason: None,
            verified: true,
            secret_label: None,
            body: Some("{\"x\":\"</pre><script>alert(1)</script>\"}".to_owned()),
            headers: None,
            answer: None,
            attempts: Vec::new(),
            inbox: None,
            projection: None,
        };
        let html = render(&detail, &jiff::tz::TimeZone::UTC);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("/api/deliveries/%3Cscript%3E/replay"));
    }
}
