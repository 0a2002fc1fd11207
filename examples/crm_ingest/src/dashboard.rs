//! The server-rendered HTML dashboard: recent calls, trainings, the
//! delivery log and rejections. One page, inline CSS, no scripts or
//! external assets; every value is HTML-escaped. (To be replaced by the
//! templated `views.rs` with charts.)

use std::fmt::Write as _;

use crate::storage::{CallRow, Counts, DeliveryRow, RejectionRow, TrainingRow};

/// Rows of each table shown on the dashboard (the JSON API has them all).
pub const RECENT: usize = 50;

/// What the dashboard shows.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Table sizes (tests apart).
    pub counts: Counts,
    /// The inbox: rows not yet processed (pending, leased, failed).
    pub inbox_backlog: u64,
    /// The inbox: rows out of attempts.
    pub inbox_dead: u64,
    /// Unverified rejections per minute and reason, newest first.
    pub rejections: Vec<RejectionRow>,
    /// The newest calls (real and test).
    pub calls: Vec<CallRow>,
    /// The newest trainings (real and test).
    pub trainings: Vec<TrainingRow>,
    /// The newest verified delivery-log entries.
    pub deliveries: Vec<DeliveryRow>,
    /// Log entries dropped because the log writer fell behind.
    pub dropped_log_entries: u64,
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
p.sub{color:#5b6472;margin:0 0 1rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e6}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#f2f4f7;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.85em}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8em;background:#eef0f3}
.accepted{background:#dcf5e3}.duplicate{background:#fff2cc}.rejected{background:#fde2e1}
.empty{color:#5b6472;font-style:italic}
";

/// Renders the whole page.
pub fn render(page: &Page) -> String {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>CRM ingest: Kendo webhooks</title><style>",
    );
    html.push_str(STYLE);
    html.push_str("</style></head><body>\n<h1>CRM ingest</h1>\n");
    html.push_str(
        "<p class=\"sub\">Kendo webhooks received on <code>POST /webhooks/kendo</code>. \
         JSON: <a href=\"/api/calls\">calls</a>, <a href=\"/api/trainings\">trainings</a>, \
         <a href=\"/api/deliveries\">deliveries</a>, <a href=\"/api/rejections\">rejections</a>, \
         <a href=\"/api/inbox\">unprocessed</a>, <a href=\"/metrics\">metrics</a>, \
         <a href=\"/healthz\">health</a>.</p>\n",
    );
    let last = page
        .counts
        .last_delivery_ms
        .map_or_else(|| "none yet".to_owned(), crate::storage::format_ms);
    let _ = writeln!(
        html,
        "<p class=\"sub\">Last verified delivery: {}</p>",
        escape(&last)
    );

    let c = &page.counts;
    html.push_str("<div class=\"cards\">");
    for (label, value) in [
        ("calls", c.calls),
        ("trainings", c.trainings),
        ("test deliveries", c.test_calls + c.test_trainings),
        ("waiting for the worker", page.inbox_backlog),
        ("failed for good", page.inbox_dead),
        ("rejected (unverified)", c.rejections),
    ] {
        let _ = write!(html, "<div class=\"card\"><b>{value}</b>{label}</div>");
    }
    html.push_str("</div>\n");

    section_header(
        &mut html,
        "Recent calls",
        page.calls.len(),
        c.calls + c.test_calls,
    );
    table(
        &mut html,
        &["received", "agent", "AI score", "duration", "call", "team member", "event", "test"],
        page.calls.iter().map(|call| {
            vec![
                Cell::text(&call.received_at),
                Cell::text(agent(call.agent_name.as_deref(), call.agent_id.as_deref())),
                Cell::num(score(call.ai_score)),
                Cell::num(duration(call.duration)),
                Cell::code(&call.call_id),
                Cell::text(call.team_member_user_id.as_deref().unwrap_or("")),
                Cell::code(&call.event_id),
                Cell::tag(if call.is_test { "test" } else { "" }, ""),
            ]
        }),
        "No calls yet. Send one with: kendo-webhook send --url http://ADDR/webhooks/kendo --secret ...",
    );

    section_header(
        &mut html,
        "Recent trainings",
        page.trainings.len(),
        c.trainings + c.test_trainings,
    );
    table(
        &mut html,
        &[
            "received",
            "agent",
            "AI score",
            "duration",
            "training",
            "team member",
            "event",
            "test",
        ],
        page.trainings.iter().map(|t| {
            vec![
                Cell::text(&t.received_at),
                Cell::text(agent(t.agent_name.as_deref(), t.agent_id.as_deref())),
                Cell::num(score(t.ai_score)),
                Cell::num(duration(t.duration)),
                Cell::code(&t.training_id),
                Cell::text(t.team_member_user_id.as_deref().unwrap_or("")),
                Cell::code(&t.event_id),
                Cell::tag(if t.is_test { "test" } else { "" }, ""),
            ]
        }),
        "No trainings yet.",
    );

    section_header(
        &mut html,
        "Delivery log",
        page.deliveries.len(),
        c.deliveries,
    );
    table(
        &mut html,
        &[
            "received",
            "outcome",
            "status",
            "reason",
            "delivery id",
            "event",
            "event id",
            "secret",
        ],
        page.deliveries.iter().map(|d| {
            vec![
                Cell::text(&d.received_at),
                Cell::tag(&d.outcome, &d.outcome),
                Cell::num(d.status.to_string()),
                Cell::text(d.reason.as_deref().unwrap_or("")),
                Cell::code(d.delivery_id.as_deref().unwrap_or("")),
                Cell::text(d.event.as_deref().unwrap_or("")),
                Cell::code(d.event_id.as_deref().unwrap_or("")),
                Cell::text(d.secret_label.as_deref().unwrap_or("")),
            ]
        }),
        "No deliveries yet.",
    );

    section_header(
        &mut html,
        "Rejected requests (unverified), per minute",
        page.rejections.len(),
        0,
    );
    table(
        &mut html,
        &[
            "minute",
            "reason",
            "status",
            "count",
            "last delivery id (unverified)",
        ],
        page.rejections.iter().map(|r| {
            vec![
                Cell::text(&r.minute),
                Cell::tag(&r.reason, "rejected"),
                Cell::num(r.status.to_string()),
                Cell::num(r.count.to_string()),
                Cell::code(r.last_delivery_id.as_deref().unwrap_or("")),
            ]
        }),
        "No rejected requests.",
    );
    html.push_str("</body></html>\n");
    html
}

fn section_header(html: &mut String, title: &str, shown: usize, total: u64) {
    let _ = write!(html, "<h2>{}</h2>", escape(title));
    if u64::try_from(shown).is_ok_and(|shown| shown < total) {
        let _ = write!(html, "<p class=\"sub\">newest {shown} of {total}</p>");
    }
    html.push('\n');
}

/// One table cell: its text (escaped when written) and how to show it.
struct Cell {
    text: String,
    kind: Kind,
}

enum Kind {
    Text,
    Num,
    Code,
    /// A tag with a CSS class (one of a fixed set, never user data).
    Tag(&'static str),
}

impl Cell {
    fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: Kind::Text,
        }
    }
    fn num(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: Kind::Num,
        }
    }
    fn code(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: Kind::Code,
        }
    }
    fn tag(text: impl Into<String>, class: &str) -> Self {
        let class = match class {
            "accepted" => "accepted",
            "duplicate" => "duplicate",
            "rejected" => "rejected",
            _ => "",
        };
        Self {
            text: text.into(),
            kind: Kind::Tag(class),
        }
    }
}

fn table(html: &mut String, headers: &[&str], rows: impl Iterator<Item = Vec<Cell>>, empty: &str) {
    html.push_str("<table><thead><tr>");
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>\n");
    let mut any = false;
    for row in rows {
        any = true;
        html.push_str("<tr>");
        for cell in row {
            let text = escape(&cell.text);
            let _ = match cell.kind {
                Kind::Text => write!(html, "<td>{text}</td>"),
                Kind::Num => write!(html, "<td class=\"num\">{text}</td>"),
                Kind::Code => write!(html, "<td><code>{text}</code></td>"),
                Kind::Tag(_) if cell.text.is_empty() => write!(html, "<td></td>"),
                Kind::Tag(class) => {
                    write!(html, "<td><span class=\"tag {class}\">{text}</span></td>")
                }
            };
        }
        html.push_str("</tr>\n");
    }
    if !any {
        let _ = writeln!(
            html,
            "<tr><td class=\"empty\" colspan=\"{}\">{}</td></tr>",
            headers.len(),
            escape(empty)
        );
    }
    html.push_str("</tbody></table>\n");
}

fn agent(name: Option<&str>, id: Option<&str>) -> String {
    match (name, id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(name), None) => name.to_owned(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => String::new(),
    }
}

fn score(score: Option<f64>) -> String {
    score.map_or_else(String::new, |s| format!("{s}"))
}

fn duration(seconds: Option<f64>) -> String {
    seconds.map_or_else(String::new, |s| format!("{s} s"))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}
