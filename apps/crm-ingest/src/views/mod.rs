//! The dashboard page, rendered on the server.
//!
//! [`render`] turns a [`DashboardData`] into one complete HTML page: business
//! cards, four charts, the delivery log, recent calls and trainings, test
//! deliveries, the average score per agent, events that arrived but were not
//! processed, and a search. The page has no external assets: the CSS is
//! inline, the charts are SVG drawn by plotters, and its one script of the
//! app's own ([`crate::assets`]) refreshes it in place every
//! [`DashboardData::refresh_secs`] seconds while the tab is visible (without
//! scripts, it reloads itself).
//!
//! Every value goes through maud, which escapes by construction; chart labels
//! go through plotters' SVG backend, which escapes text as well.
//!
//! From the top, the business first: a warning when no delivery arrived for
//! a while, search results (when searched), the cards (each says its
//! period), recent calls beside the average score per agent (each agent
//! links to its page), recent trainings beside the score chart. Then the
//! pipeline's health: events not processed (with their requeue buttons),
//! rejections with what happened and what to do, the delivery log (one
//! row per delivery id, linking to its page), the delivery and backlog
//! charts, Kendo payload changes and test deliveries. Long cells wrap
//! rather than being cut off; phones hide a few secondary columns.
//!
//! The data types are plain rows and numbers, already computed by the caller
//! (one SQL query each). Times are Unix milliseconds (`received_ms` columns),
//! shown as clock times in `CRM_TIME_ZONE` or "3 min ago", never as raw
//! ISO strings.

// `pub` is this module's API; the app that includes it as a private module
// of a binary would otherwise warn on each item.
#![allow(unreachable_pub)]

use maud::{html, PreEscaped, DOCTYPE};

use crate::outcome::DeliveryOutcome;

pub mod agent;
mod charts;
mod data;
pub mod destinations;
pub mod detail;
mod format;
mod reasons;
mod tables;

pub use self::format::path_segment;

pub use self::data::*;

use self::charts::*;
use self::format::*;
use self::tables::*;

/// Renders the whole page, times in `data.time_zone`.
pub fn render(data: &DashboardData) -> String {
    in_zone(&data.time_zone, || render_page(data))
}

fn render_page(data: &DashboardData) -> String {
    let now = data.now_ms;
    let cards = &data.cards;
    let quiet_ms = i64::try_from(data.quiet_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let quiet = cards
        .last_delivery_ms
        .is_none_or(|last| now.saturating_sub(last) > quiet_ms);
    let groups = group_attempts(&data.delivery_log);
    let query = data.search.as_ref().map_or("", |s| s.query.as_str());

    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if data.refresh_secs > 0 {
                    // Without scripts, the page reloads itself; with them,
                    // it refreshes in place (`/assets/console.js`).
                    noscript { meta http-equiv="refresh" content=(data.refresh_secs); }
                }
                title { "CRM ingest · Kendo webhooks" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    div {
                        h1 { "CRM ingest" }
                        p.sub {
                            "Kendo webhooks on " code { "POST /webhooks/kendo" } ". "
                            "Updated " (clock(now, now)) " " (zone_label(now))
                            @if data.refresh_secs > 0 { ", every " (data.refresh_secs) " s" }
                            ". JSON: "
                            a href="/api/calls" { "calls" } ", "
                            a href="/api/trainings" { "trainings" } ", "
                            a href="/api/deliveries" { "deliveries" } ". CSV: "
                            a href="/api/calls?format=csv" { "calls" } ", "
                            a href="/api/trainings?format=csv" { "trainings" } ", "
                            a href="/api/deliveries?format=csv" { "deliveries" } ". "
                            a href="/destinations" { "Destinations and alerts" } "."
                        }
                    }
                    form.search method="get" role="search" {
                        label for="q" { "Find" }
                        input #q type="search" name="q" value=(query)
                            placeholder="any id, agent, team member";
                        button type="submit" { "Search" }
                    }
                }
                main #live data-refresh=(data.refresh_secs) {
                @if quiet {
                    p.banner role="alert" {
                        @match cards.last_delivery_ms {
                            Some(last) => {
                                "No delivery received for " (duration_words(now.saturating_sub(last)))
                                ". Check that Kendo points at this server and that the secrets match "
                                "(rejections below show a mix-up)."
                            }
                            None => {
                                "No delivery received yet. Send a test one with "
                                code { "kendo-webhook send --url http://HOST/webhooks/kendo --secret …" } "."
                            }
                        }
                    }
                }
                @if let Some(search) = &data.search {
                    (search_results(now, search))
                }
                section.cards aria-label="Summary" {
                    div.card {
                        span.label { "Calls today" }
                        b { (thousands(cards.calls_today)) }
                        span.sub { "since 00:00 " (zone_name()) " · " (thousands(cards.calls_total)) " real calls in all" }
                    }
                    div.card {
                        span.label { "Average AI score" }
                        b { (cards.average_score.map_or_else(|| "–".to_owned(), score)) }
                        span.sub { "all time, over " (thousands(cards.scored_calls)) " scored calls" }
                    }
                    div.card {
                        span.label { "Trainings today" }
                        b { (thousands(cards.trainings_today)) }
                        span.sub { "since 00:00 " (zone_name()) " · " (thousands(cards.trainings_total)) " in all" }
                    }
                    div.card.warn[quiet] {
                        span.label { "Last delivery received" }
                        @match cards.last_delivery_ms {
                            Some(last) => {
                                b { (ago(now, last)) }
                                span.sub { (full(last)) }
                            }
                            None => { b { "none yet" } span.sub { "waiting for Kendo" } }
                        }
                    }
                    div.card.warn[cards.unprocessed > 0] {
                        span.label { "Waiting for the worker" }
                        b { (thousands(cards.waiting)) }
                        span.sub {
                            @if let Some(oldest) = cards.oldest_waiting_ms {
                                "oldest " (ago(now, oldest))
                            } @else {
                                "all caught up"
                            }
                            @if cards.unprocessed > 0 {
                                " · " (thousands(cards.unprocessed)) " failed"
                            }
                        }
                    }
                }
                div.split {
                    section {
                        h2 { "Recent calls" span.count { (counted(data.recent_calls.len(), "call", "calls")) } }
                        (activity_table(now, &data.recent_calls, "call", "No real calls yet."))
                    }
                    section {
                        h2 { "Average score per agent" span.count { "all time" } }
                        (agents_table(&data.agent_scores))
                    }
                }
                div.split.even {
                    section {
                        h2 { "Recent trainings" span.count { (counted(data.recent_trainings.len(), "training", "trainings")) } }
                        (activity_table(now, &data.recent_trainings, "training", "No real trainings yet."))
                    }
                    section {
                        h2 { "AI score of real calls" span.count { "all time" } }
                        (figure("Calls per score", score_chart(&data.score_histogram)))
                    }
                }
                h2.part { "Pipeline health" }
                (unprocessed_section(now, &data.unprocessed))
                (rejections_section(&data.rejections_by_reason))
                section {
                    h2 {
                        "Delivery log"
                        span.count { (counted(groups.len(), "delivery", "deliveries")) }
                        nav.filters aria-label="Show only" {
                            a.on[data.log_filter.is_none()] href="?" { "all" }
                            @for outcome in [DeliveryOutcome::Accepted, DeliveryOutcome::Duplicate, DeliveryOutcome::Rejected, DeliveryOutcome::Failed] {
                                a.on[data.log_filter == Some(outcome)]
                                    href=(format!("?outcome={}", outcome.as_str())) { (outcome.as_str()) }
                            }
                        }
                    }
                    (log_table(now, &groups))
                }
                section.charts aria-label="Charts" {
                    (figure_with_legend(
                        "Deliveries per minute, last hour",
                        deliveries_chart(now, &data.deliveries_per_minute),
                        html! {
                            span.key.accepted { "accepted" }
                            span.key.duplicate { "duplicate" }
                            span.key.rejected { "rejected" }
                        },
                    ))
                    (figure("Waiting for the worker, last hour", backlog_chart(now, &data.backlog)))
                    (figure("Rejections by reason, last 24 h", rejections_chart(&data.rejections_by_reason)))
                }
                @if !data.payload_changes.is_empty() {
                    (payload_changes_section(now, &data.payload_changes))
                }
                section {
                    h2 { "Test deliveries" span.count { (counted(data.test_events.len(), "event", "events")) } }
                    (test_table(now, &data.test_events))
                }
            }
                script src="/assets/console.js" defer {}
            }
        }
    };
    page.into_string()
}

const STYLE: &str = "
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1400px;padding:1rem;color:#1d2330;background:#f5f6f8}
h1{font-size:1.35rem;margin:0}
h2{font-size:1rem;margin:1.25rem 0 .5rem;display:flex;align-items:baseline;gap:.5rem}
h2 .count{font-weight:400;color:#5b6472;font-size:.85rem}
.filters{font-weight:400;font-size:.85rem;display:flex;flex-wrap:wrap;gap:0 .6rem;margin-left:auto}
.filters a.on{color:inherit;font-weight:600;text-decoration:none}
.sub{color:#5b6472;margin:.15rem 0 0;font-size:.85rem}
a{color:#2f5fb3}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,monospace}
.top{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:flex-end;gap:.75rem;margin-bottom:1rem}
.search{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
.search label{font-size:.85rem;color:#5b6472}
.search input{font:inherit;padding:.35rem .5rem;border:1px solid #c9ced6;border-radius:5px;min-width:0;width:16rem;max-width:100%}
.search button{font:inherit;padding:.35rem .8rem;border:1px solid #2f5fb3;background:#2f5fb3;color:#fff;border-radius:5px}
.results{margin:0 0 1rem}.results h2{margin-top:0}
.banner{background:#fff4e5;border:1px solid #f0b35a;color:#6b4100;border-radius:6px;padding:.6rem .8rem;margin:0 0 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:.75rem}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:.7rem .9rem;min-width:0}
.card .label{display:block;color:#5b6472;font-size:.85rem}
.card b{display:block;font-size:1.6rem;line-height:1.2;margin:.15rem 0;overflow-wrap:anywhere}
.card .sub{display:block;overflow-wrap:anywhere}
.card.warn{border-color:#f0b35a;background:#fffaf2}
.card.warn b{color:#a35f00}
.charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.75rem;margin-top:.75rem}
figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:.6rem .6rem .3rem;min-width:0}
figcaption{font-weight:600;margin:0 0 .2rem .2rem;display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 .75rem}
.legend{font-weight:400;font-size:.8rem;color:#3d4654;display:flex;gap:.75rem}
.key::before{content:'';display:inline-block;width:.9rem;height:3px;margin:0 .3rem .2rem 0;vertical-align:middle;background:#888}
.key.accepted::before{background:#2e9e5b}.key.duplicate::before{background:#d69e2e}.key.rejected::before{background:#d64545}
figure svg{display:block;width:100%;height:auto}
.split{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:0 1rem}
.split.even{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}
@media (max-width:960px){.split,.split.even{grid-template-columns:minmax(0,1fr)}}
@media (max-width:700px){body{padding:.6rem}.charts{grid-template-columns:minmax(0,1fr)}.card{padding:.5rem .7rem}.card b{font-size:1.3rem}figure{padding:.4rem .2rem .2rem}.search{width:100%}th.opt,td.opt{display:none}.card .sub{white-space:normal}th,td{padding:.3rem .45rem}.search input{flex:1;width:auto}}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde1e6;border-radius:8px;max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{background:#f2f4f7;font-weight:600;font-size:.85rem;color:#3d4654}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.clip{white-space:normal;overflow-wrap:anywhere;min-width:5rem}
td.clip.wide{min-width:8rem}
td.empty{color:#5b6472;font-style:italic;white-space:normal}
.tag{display:inline-block;padding:0 .45rem;border-radius:4px;font-size:.8rem;background:#eef0f3}
.tag.accepted{background:#dcf5e3;color:#1d6b3a}.tag.duplicate{background:#fff2cc;color:#7a5a00}
.tag.rejected,.tag.dead{background:#fde2e1;color:#9b1c1c}.tag.failed{background:#ffe8d1;color:#8a4300}
.tag.test{background:#e6ecfb;color:#2f4f9b}
.muted{color:#5b6472}
h2.part{font-size:1.15rem;margin:2rem 0 .25rem;padding-top:.75rem;border-top:2px solid #dde1e6}
.charts.one{grid-template-columns:minmax(0,1fr)}
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:12rem}
@media (max-width:700px){td.clip,td.clip.wide,td.wrap{min-width:0}th,td{white-space:normal;padding:.3rem .3rem}}
form.inline{display:inline;margin:0}
form.inline button{font:inherit;font-size:.8rem;padding:.1rem .5rem;border:1px solid #2f5fb3;background:#2f5fb3;color:#fff;border-radius:4px;cursor:pointer}
form.inline.push{margin-left:auto}
";

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_772_712_003_000; // 2026-03-05 12:00:03 UTC

    fn entry(delivery: &str, ago_ms: i64, outcome: DeliveryOutcome) -> LogRow {
        LogRow {
            received_ms: NOW - ago_ms,
            delivery_id: Some(delivery.to_owned()),
            event_id: Some(format!("evt_{delivery}")),
            event: Some("call.uploaded".to_owned()),
            outcome,
            reason: (outcome == DeliveryOutcome::Rejected).then(|| "invalid_signature".to_owned()),
            status: if outcome == DeliveryOutcome::Rejected {
                401
            } else {
                200
            },
            verified: outcome != DeliveryOutcome::Rejected,
            secret_label: None,
        }
    }

    fn sample() -> DashboardData {
        let hostile = "<script>alert(1)</script>";
        DashboardData {
            now_ms: NOW,
            cards: Cards {
                calls_today: 12,
                calls_total: 1234,
                average_score: Some(81.25),
                scored_calls: 1200,
                last_delivery_ms: Some(NOW - 30_000),
                waiting: 3,
                oldest_waiting_ms: Some(NOW - 4_000),
                ..Cards::default()
            },
            deliveries_per_minute: vec![
                MinuteCounts {
                    minute_ms: NOW - 120_000,
                    accepted: 5,
                    duplicate: 1,
                    rejected: 2,
                },
                MinuteCounts {
                    minute_ms: NOW,
                    accepted: 3,
                    duplicate: 0,
                    rejected: 0,
                },
            ],
            rejections_by_reason: vec![ReasonCount {
                reason: hostile.to_owned(),
                count: 7,
            }],
            score_histogram: [0, 0, 0, 1, 2, 3, 5, 8, 13, 4],
            backlog: vec![
                BacklogSample {
                    at_ms: NOW - 600_000,
                    waiting: 0,
                },
                BacklogSample {
                    at_ms: NOW - 300_000,
                    waiting: 9,
                },
                BacklogSample {
                    at_ms: NOW,
                    waiting: 3,
                },
            ],
            delivery_log: vec![entry("d1", 1_000, DeliveryOutcome::Accepted)],
            recent_calls: vec![ActivityRow {
                received_ms: NOW - 2_000,
                id: "call_1".to_owned(),
                event_id: "evt_1".to_owned(),
                agent_name: Some(hostile.to_owned()),
                ai_score: Some(87.0),
                duration_secs: Some(245.5),
                ..ActivityRow::default()
            }],
            agent_scores: vec![AgentScore {
                agent: hostile.to_owned(),
                calls: 1,
                average_score: Some(87.0),
            }],
            search: Some(Search {
                query: hostile.to_owned(),
                hits: Vec::new(),
            }),
            ..DashboardData::default()
        }
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let html = render(&sample());
        assert!(!html.contains("<script>"), "raw <script> in the page");
        assert!(!html.contains("alert(1)</script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn every_chart_is_an_svg_with_data() {
        let html = render(&sample());
        assert_eq!(html.matches("<svg").count(), 4, "four charts");
        assert!(!html.contains("No deliveries in the last hour"));
        assert!(!html.contains("Nothing rejected"));
        assert!(!html.contains("No scored calls yet"));
        assert!(!html.contains("No samples yet"));
        // Axis labels and the legend are SVG text, without system fonts.
        assert!(html.contains("<text"));
        assert!(html.contains("now\n</text>"), "axis labels are SVG text");
        assert!(
            html.contains("invalid_signature")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt; · 7\n</text>")
        );
        assert!(
            html.contains("<polyline") || html.contains("<path"),
            "lines drawn"
        );
        assert!(html.contains("<rect"), "bars drawn");
    }

    #[test]
    fn empty_data_renders_a_page_with_empty_charts() {
        let html = render(&DashboardData {
            now_ms: NOW,
            ..DashboardData::default()
        });
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 4);
        for text in [
            "No deliveries in the last hour",
            "Nothing rejected",
            "No scored calls yet",
            "No samples yet",
            "No deliveries yet.",
            "No real calls yet.",
            "No delivery received yet.",
        ] {
            assert!(html.contains(text), "missing {text:?}");
        }
        assert!(html.contains(r#"<meta http-equiv="refresh" content="15">"#));
        assert!(html.contains(r#"name="viewport""#));
        assert!(!html.contains("<th></th>"), "an empty header");
    }

    #[test]
    fn attempts_of_one_delivery_are_one_row() {
        let log = vec![
            entry("d2", 1_000, DeliveryOutcome::Accepted),
            entry("d1", 2_000, DeliveryOutcome::Accepted),
            entry("d2", 10_000, DeliveryOutcome::Rejected),
            LogRow {
                delivery_id: None,
                ..entry("x", 11_000, DeliveryOutcome::Rejected)
            },
            entry("d2", 30_000, DeliveryOutcome::Rejected),
            LogRow {
                delivery_id: None,
                ..entry("y", 40_000, DeliveryOutcome::Rejected)
            },
        ];
        let groups = group_attempts(&log);
        let summary: Vec<_> = groups
            .iter()
            .map(|g| (g.latest.delivery_id.as_deref(), g.attempts))
            .collect();
        assert_eq!(
            summary,
            [(Some("d2"), 3), (Some("d1"), 1), (None, 1), (None, 1)]
        );
        assert_eq!(groups[0].latest.outcome, DeliveryOutcome::Accepted);
        assert_eq!(groups[0].first_ms, NOW - 30_000);
        assert_eq!(
            groups[0].outcomes,
            [
                (DeliveryOutcome::Accepted, 1),
                (DeliveryOutcome::Rejected, 2)
            ]
        );

        let html = render(&DashboardData {
            now_ms: NOW,
            delivery_log: log,
            ..DashboardData::default()
        });
        assert_eq!(html.matches("<code>d2</code>").count(), 1, "d2 is one row");
        assert!(html.contains("before: rejected ×2"));
    }

    #[test]
    fn outcomes_read_from_the_log() {
        for outcome in [
            DeliveryOutcome::Accepted,
            DeliveryOutcome::Duplicate,
            DeliveryOutcome::Rejected,
            DeliveryOutcome::Failed,
        ] {
            assert_eq!(outcome.as_str().parse::<DeliveryOutcome>(), Ok(outcome));
        }
        assert!("<b>".parse::<DeliveryOutcome>().is_err());
    }

    #[test]
    fn times_show_in_the_console_s_zone_with_its_offset() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let html = render(&DashboardData {
            time_zone: paris.clone(),
            ..sample()
        });
        assert!(
            html.contains("Europe/Paris (+01:00)"),
            "the zone in the header"
        );
        assert!(
            html.contains("since 00:00 Europe/Paris"),
            "the cards' period"
        );
        assert!(html.contains("all time, over"));
        in_zone(&paris, || {
            assert_eq!(full(NOW), "2026-03-05 13:00:03 +01:00");
            assert_eq!(clock(NOW, NOW - 3_000), "13:00:00");
            assert_eq!(
                iso(NOW),
                "2026-03-05T12:00:03Z",
                "machine-readable stays UTC"
            );
        });
        assert_eq!(full(NOW), "2026-03-05 12:00:03 UTC", "restored after");
    }

    #[test]
    fn times_are_for_humans() {
        assert_eq!(full(NOW), "2026-03-05 12:00:03 UTC");
        assert_eq!(ago(NOW, NOW - 125_000), "2 min ago");
        assert_eq!(ago(NOW, NOW + 9_000), "just now");
        assert_eq!(clock(NOW, NOW - 3_000), "12:00:00");
        assert_eq!(clock(NOW, NOW - 86_400_000), "2026-03-04 12:00");
        assert_eq!(duration_words(2 * 3_600_000 + 5 * 60_000), "2 h 5 min");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(245.5), "4:06");
        let html = render(&sample());
        assert!(!html.contains(".000Z"), "no raw ISO with milliseconds");
    }
}
