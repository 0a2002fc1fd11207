//! The dashboard's tables: the delivery log grouped per delivery, recent
//! calls and trainings, agents, test deliveries, events not processed and
//! search results.

use maud::{html, Markup};

use super::*;

/// A table in its own scrolling box. Each header: its text, whether the
/// column holds numbers (right-aligned), and whether phones may hide it
/// (its cells then carry the class `opt` too).
pub(super) fn table(headers: &[(&str, bool, bool)], rows: Markup, empty: Option<&str>) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr {
                    @for (header, num, opt) in headers {
                        th.num[*num].opt[*opt] { (header) }
                    }
                } }
                tbody {
                    @if let Some(empty) = empty {
                        tr { td.empty colspan=(headers.len()) { (empty) } }
                    } @else {
                        (rows)
                    }
                }
            }
        }
    }
}

pub(super) fn when(now: i64, at: i64) -> Markup {
    let label = if (0..3_600_000).contains(&now.saturating_sub(at)) {
        ago(now, at)
    } else {
        clock(now, at)
    };
    html! { time datetime=(iso(at)) title=(full(at)) { (label) } }
}

pub(super) fn log_table(now: i64, groups: &[DeliveryGroup<'_>]) -> Markup {
    let rows = html! {
        @for group in groups {
            @let entry = group.latest;
            @let earlier: Vec<String> = group
                .outcomes
                .iter()
                .filter_map(|(outcome, n)| {
                    let n = if *outcome == entry.outcome { n - 1 } else { *n };
                    (n > 0).then(|| format!("{} ×{n}", outcome.as_str()))
                })
                .collect();
            tr {
                td { (when(now, entry.received_ms)) }
                td { span.tag.(entry.outcome.as_str()) { (entry.outcome.as_str()) } }
                td.num.opt title=(format!("first attempt {}", full(group.first_ms))) { (group.attempts) }
                td.num.opt { (entry.status) }
                td.clip.wide {
                    (entry.reason.as_deref().unwrap_or(""))
                    @if !earlier.is_empty() {
                        @if entry.reason.is_some() { " · " }
                        span.muted { "before: " (earlier.join(", ")) }
                    }
                }
                td.clip.opt title=[entry.event.as_deref()] { (entry.event.as_deref().unwrap_or("")) }
                td.clip title=[entry.delivery_id.as_deref()] {
                    @if let Some(id) = entry.delivery_id.as_deref() {
                        a href=(format!("/deliveries/{}", path_segment(id))) { code { (id) } }
                    }
                }
                td.clip.opt title=[entry.event_id.as_deref()] {
                    code { (entry.event_id.as_deref().unwrap_or("")) }
                }
                td.opt {
                    @match (entry.verified, entry.secret_label.as_deref()) {
                        (true, Some(label)) => { "yes (" (label) ")" }
                        (true, None) => "yes",
                        (false, _) => span.muted { "no" },
                    }
                }
            }
        }
    };
    table(
        &[
            ("received", false, false),
            ("outcome", false, false),
            ("attempts", true, true),
            ("status", true, true),
            ("reason", false, false),
            ("event", false, true),
            ("delivery id", false, false),
            ("event id", false, true),
            ("verified", false, true),
        ],
        rows,
        groups.is_empty().then_some("No deliveries yet."),
    )
}

pub(super) fn activity_table(
    now: i64,
    rows: &[ActivityRow],
    id_header: &str,
    empty: &str,
) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td { (when(now, row.received_ms)) }
                td.clip title=[row.agent_id.as_deref()] {
                    @let name = agent(row.agent_name.as_deref(), row.agent_id.as_deref());
                    @let key = if name.is_empty() { "unknown agent" } else { name.as_str() };
                    a href=(format!("/agents/{}", path_segment(key))) { (name) }
                }
                td.num { (row.ai_score.map_or_else(String::new, score)) }
                td.num.opt { (row.duration_secs.map_or_else(String::new, duration)) }
                td.clip title=(format!("{} (event {})", row.id, row.event_id)) { code { (row.id) } }
                td.clip.opt { (row.team_member.as_deref().unwrap_or("")) }
            }
        }
    };
    table(
        &[
            ("received", false, false),
            ("agent", false, false),
            ("AI score", true, false),
            ("duration", true, true),
            (id_header, false, false),
            ("team member", false, true),
        ],
        body,
        rows.is_empty().then_some(empty),
    )
}

pub(super) fn agents_table(rows: &[AgentScore]) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td.clip title=(row.agent) { a href=(format!("/agents/{}", path_segment(&row.agent))) { (row.agent) } }
                td.num { (thousands(row.calls)) }
                td.num { (row.average_score.map_or_else(|| "–".to_owned(), score)) }
            }
        }
    };
    table(
        &[
            ("agent", false, false),
            ("calls", true, false),
            ("avg. AI score", true, false),
        ],
        body,
        rows.is_empty().then_some("No scored calls yet."),
    )
}

pub(super) fn unprocessed_section(now: i64, rows: &[UnprocessedEvent]) -> Markup {
    html! {
        section {
            h2 {
                "Not processed" span.count { (counted(rows.len(), "event", "events")) }
                @if rows.iter().any(|r| r.state == UnprocessedState::Dead) {
                    form.inline.push method="post" action="/api/inbox/requeue?state=dead" {
                        button type="submit" { "Requeue all dead rows" }
                    }
                }
            }
            (unprocessed_table(now, rows))
        }
    }
}

pub(super) fn unprocessed_table(now: i64, rows: &[UnprocessedEvent]) -> Markup {
    let body = html! {
        @for row in rows {
            @let state = match row.state {
                UnprocessedState::Failed => "failed",
                UnprocessedState::Dead => "dead",
            };
            tr {
                td { (when(now, row.received_ms)) }
                td { span.tag.(state) { (state) } }
                td.num.opt { (row.attempts) }
                td.clip title=[row.last_error.as_deref()] { (row.last_error.as_deref().unwrap_or("")) }
                td.clip { (row.event) }
                td.clip.opt title=(format!("{} (delivery {})", row.event_id, row.delivery_id)) {
                    a href=(format!("/deliveries/{}", path_segment(&row.delivery_id))) { code { (row.event_id) } }
                }
                td.opt {
                    @if let Some(next) = row.next_try_ms {
                        (if next > now { format!("in {}", duration_words(next - now)) } else { "now".to_owned() })
                    } @else {
                        span.muted { "needs a requeue" }
                    }
                }
                td {
                    form.inline method="post" action=(format!("/api/inbox/{}/requeue", path_segment(&row.event_id))) {
                        button type="submit" { "Requeue" }
                    }
                }
            }
        }
    };
    table(
        &[
            ("received", false, false),
            ("state", false, false),
            ("attempts", true, true),
            ("last error", false, false),
            ("event", false, false),
            ("event id", false, true),
            ("next try", false, true),
            ("action", false, false),
        ],
        body,
        rows.is_empty()
            .then_some("Every event that arrived was processed."),
    )
}

pub(super) fn test_table(now: i64, rows: &[TestEvent]) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td { (when(now, row.received_ms)) }
                td.clip { span.tag.test { "test" } " " (row.event) }
                td.clip title=(format!("{} (event {})", row.id, row.event_id)) { code { (row.id) } }
                td.clip.opt title=(row.event_id) { code { (row.event_id) } }
            }
        }
    };
    table(
        &[
            ("received", false, false),
            ("event", false, false),
            ("id", false, false),
            ("event id", false, true),
        ],
        body,
        rows.is_empty()
            .then_some("No test deliveries. They never count as real calls."),
    )
}

pub(super) fn search_results(now: i64, search: &Search) -> Markup {
    let body = html! {
        @for hit in &search.hits {
            tr {
                td { (when(now, hit.received_ms)) }
                td { (hit.kind) }
                td.clip title=(hit.id) {
                    @if matches!(hit.kind.as_str(), "delivery" | "unverified") && !hit.id.is_empty() {
                        a href=(format!("/deliveries/{}", path_segment(&hit.id))) { code { (hit.id) } }
                    } @else {
                        code { (hit.id) }
                    }
                }
                td.clip title=(hit.detail) { (hit.detail) }
            }
        }
    };
    let empty = format!("Nothing matches “{}”.", search.query);
    html! {
        section.results {
            h2 { "Search results for “" (search.query) "”" span.count { a href="?" { "clear" } } }
            (table(
                &[("received", false, false), ("kind", false, false), ("id", false, false), ("detail", false, false)],
                body,
                search.hits.is_empty().then_some(empty.as_str()),
            ))
        }
    }
}

pub(super) fn payload_changes_section(now: i64, rows: &[PayloadChangeRow]) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td.clip { (row.event) }
                td.clip { code { (row.field) } }
                td { (match row.kind.as_str() {
                    "missing" => "missing",
                    "other_type" => "another type",
                    "new" => "new field",
                    other => other,
                }) }
                td.clip title=[row.example.as_deref()] { code { (row.example.as_deref().unwrap_or("-")) } }
                td.clip.opt title=(row.event_id) { code { (row.event_id) } }
                td.num { (thousands(row.count)) }
                td { (when(now, row.last_ms)) }
            }
        }
    };
    html! {
        section {
            h2 { "Kendo payload changes" span.count { (counted(rows.len(), "field", "fields")) } }
            p.hint {
                "Fields of Kendo's events that differ from what this app reads: a field missing, "
                "of another type, or new. Deliveries are still stored; a changed field may read as "
                "empty until the app is updated. The first example of each is kept."
            }
            (table(
                &[
                    ("event", false, false),
                    ("field", false, false),
                    ("change", false, false),
                    ("first example", false, false),
                    ("first event", false, true),
                    ("seen", true, false),
                    ("last", false, false),
                ],
                body,
                None,
            ))
        }
    }
}

/// Rejections of the last 24 hours by reason: how many, what happened in
/// words, and what to do.
pub(super) fn rejections_section(reasons: &[ReasonCount]) -> Markup {
    let body = html! {
        @for row in reasons {
            @let (what, action) = super::reasons::explain(&row.reason);
            tr {
                td { code { (row.reason) } }
                td.num { (thousands(row.count)) }
                td.wrap { (what) }
                td.wrap { (action) }
            }
        }
    };
    html! {
        section {
            h2 { "Rejections" span.count { "last 24 h" } }
            (table(
                &[("reason", false, false), ("count", true, false), ("what happened", false, false), ("what to do", false, false)],
                body,
                reasons.is_empty().then_some("Nothing rejected in the last 24 hours."),
            ))
        }
    }
}
