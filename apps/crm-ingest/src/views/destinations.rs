//! The destinations page (`GET /destinations`): every destination and alert
//! with its state (delivering, failing since…, idle), its rows delivered,
//! pending and dead, and a button to replay every dead one; with `?name=`,
//! that target's newest rows, each with its attempts (time, status or
//! error, answer, latency) and a button to send it again.
//!
//! Like the dashboard: rendered on the server by maud (escaped by
//! construction), no scripts, the dashboard's CSS.
//!
//! Each target's row ([`TargetView`]) is defined here and filled by the
//! handlers ([`crate::destinations::api`]), so the view never imports them.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;

use super::format::{ago, full, path_segment};
use super::STYLE;
use crate::destinations::rows::{EventRow, TargetCounts};

/// One target as the console shows it: what the file says (never the URL's
/// path or the secret: a Slack or Zapier URL is a credential) and its rows'
/// counts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    /// The name.
    pub name: String,
    /// `destination` or `alert`; `removed` when the file no longer names it.
    pub kind: &'static str,
    /// The URL's scheme, host and port (never its path: a credential).
    pub endpoint: Option<String>,
    /// The events forwarded (`None`: every event), or the alert's rule.
    pub takes: String,
    /// Whether requests carry `webhook-signature`.
    pub signed: bool,
    /// `delivering`, `failing`, `dead` (every row given up on), `idle` (no
    /// rows yet) or `removed`.
    pub state: &'static str,
    /// Rows delivered, pending and dead, and when it started failing.
    #[serde(flatten)]
    pub counts: TargetCounts,
}

/// Renders the page: the targets, and `selected`'s rows when one is chosen
/// (`state` is the rows' filter).
pub fn render(
    targets: &[TargetView],
    selected: Option<(&str, &[EventRow])>,
    state: Option<&str>,
    now: i64,
) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Destinations · CRM ingest" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Destinations and alerts" }
                    p { a href="/" { "← dashboard" } }
                }
                @if targets.is_empty() {
                    p.empty {
                        "None configured. Name a TOML file in CRM_CONFIG with [[destinations]] and [[alerts]] "
                        "(see docs/destinations.md) and restart."
                    }
                } @else {
                    (target_table(targets, now))
                }
                @if let Some((name, rows)) = selected {
                    (rows_table(name, rows, state, now))
                }
            }
        }
    };
    page.into_string()
}

fn target_table(targets: &[TargetView], now: i64) -> Markup {
    html! {
        style { "form.inline{display:inline;margin:0}" }
        section {
            div.scroll {
                table {
                    thead { tr {
                        th { "name" } th { "kind" } th { "endpoint" } th { "takes" } th { "signed" }
                        th { "state" } th.num { "delivered" } th.num { "pending" } th.num { "dead" }
                        th { "last delivered" }
                    } }
                    tbody {
                        @for t in targets {
                            @let link = format!("/destinations?name={}", path_segment(&t.name));
                            tr {
                                td { a href=(link) { (t.name) } }
                                td { (t.kind) }
                                td { (t.endpoint.as_deref().unwrap_or("—")) }
                                td { (t.takes) }
                                td { @if t.signed { "yes" } @else { "no" } }
                                td {
                                    @match t.counts.failing_since_ms {
                                        Some(since) => span title=(full(since)) { "failing since " (ago(now, since)) },
                                        None => (t.state),
                                    }
                                }
                                td.num { (t.counts.delivered) }
                                td.num { (t.counts.pending) }
                                td.num {
                                    @if t.counts.dead > 0 {
                                        a href=(format!("{link}&state=dead")) { (t.counts.dead) }
                                        @if t.kind != "removed" {
                                            " "
                                            form.inline method="post" action=(format!("/api/destinations/{}/replay-dead", path_segment(&t.name))) {
                                                button type="submit" { "replay " (t.counts.dead) " dead" }
                                            }
                                        }
                                    } @else { "0" }
                                }
                                td {
                                    @match t.counts.last_delivered_ms {
                                        Some(at) => span title=(full(at)) { (ago(now, at)) },
                                        None => "never",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rows_table(name: &str, rows: &[EventRow], state: Option<&str>, now: i64) -> Markup {
    let base = format!("/destinations?name={}", path_segment(name));
    html! {
        section {
            h2 { (name) ": newest rows" @if let Some(state) = state { " (" (state) ")" } }
            p {
                a href=(base) { "all" } " · "
                a href=(format!("{base}&state=pending")) { "pending" } " · "
                a href=(format!("{base}&state=delivered")) { "delivered" } " · "
                a href=(format!("{base}&state=dead")) { "dead" }
            }
            @if rows.is_empty() {
                p.empty { "No rows." }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th { "stored" } th { "event id" } th { "event" } th { "state" }
                            th { "attempts (time · status · answer · ms)" } th { "" }
                        } }
                        tbody {
                            @for row in rows {
                                tr {
                                    td title=(full(row.created_ms)) { (ago(now, row.created_ms)) }
                                    td { code { (row.event_id) } }
                                    td { (row.event) }
                                    td {
                                        (row.state)
                                        @if row.state == "pending" && row.attempts > 0 {
                                            " · next " (ago(now, row.next_ms))
                                        }
                                    }
                                    td {
                                        @if row.history.is_empty() && row.state == "pending" {
                                            span.empty { "not tried yet (waits behind older rows)" }
                                        }
                                        @for a in &row.history {
                                            div {
                                                "#" (a.attempt) " " (ago(now, a.at_ms)) " · "
                                                @match a.status {
                                                    Some(status) => strong { (status) },
                                                    None => strong { "no answer" },
                                                }
                                                " · "
                                                @if a.answer.is_empty() { "(empty answer)" } @else { (a.answer) }
                                                " · " (a.latency_ms) " ms"
                                            }
                                        }
                                    }
                                    td {
                                        @if row.state != "pending" {
                                            form method="post" action=(format!(
                                                "/api/destinations/{}/replay?event_id={}",
                                                path_segment(name),
                                                path_segment(&row.event_id)
                                            )) {
                                                button type="submit" { "send again" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
