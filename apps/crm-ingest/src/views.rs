//! The dashboard page, rendered on the server.
//!
//! [`render`] turns a [`DashboardData`] into one complete HTML page: business
//! cards, four charts, the delivery log, recent calls and trainings, test
//! deliveries, the average score per agent, events that arrived but were not
//! processed, and a search by id. The page has no scripts and no external
//! assets: the CSS is inline, the charts are SVG drawn by plotters, and it
//! reloads itself every [`DashboardData::refresh_secs`] seconds.
//!
//! Every value goes through maud, which escapes by construction; chart labels
//! go through plotters' SVG backend, which escapes text as well.
//!
//! From the top: a warning when no delivery arrived for a while, search
//! results (when searched), the cards, the charts (two a row, one on a
//! phone), the delivery log (one row per delivery id, with its attempts),
//! events not processed (here when there are any, at the bottom otherwise),
//! recent calls beside the average score per agent, recent trainings beside
//! test deliveries. Tables scroll inside their own box and keep each row on
//! one line (long cells end in an ellipsis); phones hide a few secondary
//! columns.
//!
//! The data types are plain rows and numbers, already computed by the caller
//! (one SQL query each). Times are Unix milliseconds (`received_ms` columns),
//! shown as UTC clock times or "3 min ago", never as raw ISO strings.

// `pub` is this module's API; the app that includes it as a private module
// of a binary would otherwise warn on each item.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::error::Error;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use time::OffsetDateTime;

/// How long without a verified delivery before the page warns, by default.
pub const DEFAULT_QUIET_AFTER_SECS: u64 = 15 * 60;

/// How often the page reloads itself, by default.
pub const DEFAULT_REFRESH_SECS: u32 = 15;

/// Width of the delivery-per-minute and backlog charts' window.
const WINDOW_MINUTES: i64 = 60;

/// Everything the dashboard shows, computed by the caller.
#[derive(Debug, Clone)]
pub struct DashboardData {
    /// When the data was read (Unix ms). Relative times ("3 min ago") and the
    /// last-hour charts are measured from it.
    pub now_ms: i64,
    /// Seconds between automatic reloads (`<meta http-equiv="refresh">`);
    /// 0 turns reloading off.
    pub refresh_secs: u32,
    /// Warn when no verified delivery arrived for this many seconds.
    pub quiet_after_secs: u64,
    /// The business numbers on the cards.
    pub cards: Cards,
    /// Deliveries per minute by outcome, any minutes of the last hour (missing
    /// minutes count as zero; older ones are ignored).
    pub deliveries_per_minute: Vec<MinuteCounts>,
    /// Rejected requests by reason (any window the caller chooses, e.g. the
    /// last 24 hours), verified or not.
    pub rejections_by_reason: Vec<ReasonCount>,
    /// AI scores of real calls: `score_histogram[i]` counts the scores in
    /// `[10 i, 10 i + 10)`, the last bucket also holds 100.
    pub score_histogram: [u64; 10],
    /// Samples of the worker's backlog over the last hour, any order.
    pub backlog: Vec<BacklogSample>,
    /// Delivery-log entries, newest first: one per attempt. The page groups
    /// the attempts of one delivery id into one row (see [`group_attempts`]).
    pub delivery_log: Vec<LogEntry>,
    /// The newest real calls (no test deliveries), newest first.
    pub recent_calls: Vec<ActivityRow>,
    /// The newest real trainings, newest first.
    pub recent_trainings: Vec<ActivityRow>,
    /// The newest test deliveries (`_isTest`), newest first; shown apart.
    pub test_events: Vec<TestEvent>,
    /// Average AI score per agent over real calls, in the order to show.
    pub agent_scores: Vec<AgentScore>,
    /// Inbox rows that failed or died in the worker, oldest first.
    pub unprocessed: Vec<UnprocessedEvent>,
    /// The search box (`GET ?q=`): its query and what it found.
    pub search: Option<Search>,
    /// The delivery log shows only this outcome (`GET ?outcome=`).
    pub log_filter: Option<Outcome>,
}

impl Default for DashboardData {
    fn default() -> Self {
        Self {
            now_ms: 0,
            refresh_secs: DEFAULT_REFRESH_SECS,
            quiet_after_secs: DEFAULT_QUIET_AFTER_SECS,
            cards: Cards::default(),
            deliveries_per_minute: Vec::new(),
            rejections_by_reason: Vec::new(),
            score_histogram: [0; 10],
            backlog: Vec::new(),
            delivery_log: Vec::new(),
            recent_calls: Vec::new(),
            recent_trainings: Vec::new(),
            test_events: Vec::new(),
            agent_scores: Vec::new(),
            unprocessed: Vec::new(),
            search: None,
            log_filter: None,
        }
    }
}

/// The numbers on the cards at the top. Test deliveries count nowhere here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cards {
    /// Real calls received since midnight UTC.
    pub calls_today: u64,
    /// Real calls received in all.
    pub calls_total: u64,
    /// Average AI score of real calls that have one.
    pub average_score: Option<f64>,
    /// How many real calls have an AI score.
    pub scored_calls: u64,
    /// Real trainings received since midnight UTC.
    pub trainings_today: u64,
    /// Real trainings received in all.
    pub trainings_total: u64,
    /// When the last verified delivery (accepted or duplicate) arrived.
    pub last_delivery_ms: Option<i64>,
    /// Events committed and waiting for the worker.
    pub waiting: u64,
    /// When the oldest waiting event arrived.
    pub oldest_waiting_ms: Option<i64>,
    /// Events the worker failed on (failed or dead inbox rows).
    pub unprocessed: u64,
}

/// Deliveries in one minute, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// The minute (Unix ms, any instant within it; `received_ms / 60000 * 60000`).
    pub minute_ms: i64,
    /// Accepted deliveries.
    pub accepted: u64,
    /// Duplicates (retries of an event already stored).
    pub duplicate: u64,
    /// Rejected requests.
    pub rejected: u64,
}

/// How many requests were rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount {
    /// The reason, e.g. `invalid_signature`.
    pub reason: String,
    /// How many requests.
    pub count: u64,
}

/// The worker's backlog at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogSample {
    /// When it was measured (Unix ms).
    pub at_ms: i64,
    /// Events waiting for the worker then.
    pub waiting: u64,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Verified and stored.
    Accepted,
    /// Verified, already stored before (a retry).
    Duplicate,
    /// Refused (bad signature, stale, malformed, ...).
    Rejected,
    /// Verified, but the app failed to store it (answered 5xx).
    Failed,
}

impl Outcome {
    /// The outcome's name, also its CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// Reads the name stored in the delivery log (`accepted`, `duplicate`,
/// `rejected`, `failed`): `"accepted".parse::<Outcome>()`.
impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "accepted" => Self::Accepted,
            "duplicate" => Self::Duplicate,
            "rejected" => Self::Rejected,
            "failed" => Self::Failed,
            other => return Err(format!("unknown delivery outcome {other:?}")),
        })
    }
}

/// One attempt in the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// `X-Kendo-Delivery-Id`, when the request had one.
    pub delivery_id: Option<String>,
    /// The event id, when the body could be read.
    pub event_id: Option<String>,
    /// The event name, when the body could be read.
    pub event: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the signature was verified.
    pub verified: bool,
    /// Which secret verified it (e.g. `current`, `previous`).
    pub secret_label: Option<String>,
}

/// The attempts of one delivery, as one row of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryGroup<'a> {
    /// The newest attempt: its time, outcome, status and reason are shown.
    pub latest: &'a LogEntry,
    /// How many attempts the log holds for this delivery.
    pub attempts: usize,
    /// When the first attempt in the log arrived.
    pub first_ms: i64,
    /// Each outcome and how many attempts had it, in order of first sight
    /// (newest first).
    pub outcomes: Vec<(Outcome, usize)>,
}

/// Groups log entries (newest first) by delivery id, keeping the order of
/// each delivery's newest attempt. Entries without a delivery id stay alone.
pub fn group_attempts(entries: &[LogEntry]) -> Vec<DeliveryGroup<'_>> {
    let mut groups: Vec<DeliveryGroup<'_>> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        let slot = entry
            .delivery_id
            .as_deref()
            .and_then(|id| by_id.get(id).copied());
        match slot {
            Some(index) => {
                let group = &mut groups[index];
                group.attempts += 1;
                group.first_ms = group.first_ms.min(entry.received_ms);
                match group.outcomes.iter_mut().find(|(o, _)| *o == entry.outcome) {
                    Some((_, n)) => *n += 1,
                    None => group.outcomes.push((entry.outcome, 1)),
                }
            }
            None => {
                if let Some(id) = entry.delivery_id.as_deref() {
                    by_id.insert(id, groups.len());
                }
                groups.push(DeliveryGroup {
                    latest: entry,
                    attempts: 1,
                    first_ms: entry.received_ms,
                    outcomes: vec![(entry.outcome, 1)],
                });
            }
        }
    }
    groups
}

/// A call or a training, as a table row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityRow {
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// The call id or training id.
    pub id: String,
    /// The signed event id.
    pub event_id: String,
    /// The agent's name.
    pub agent_name: Option<String>,
    /// The agent's id.
    pub agent_id: Option<String>,
    /// The team member's user id.
    pub team_member: Option<String>,
    /// Length in seconds.
    pub duration_secs: Option<f64>,
    /// The AI score (0 to 100).
    pub ai_score: Option<f64>,
}

/// A test delivery (`_isTest`), shown apart from real data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestEvent {
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// The event name, e.g. `call.uploaded`.
    pub event: String,
    /// The call id or training id.
    pub id: String,
    /// The signed event id.
    pub event_id: String,
}

/// The average AI score of one agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentScore {
    /// The agent's name, or its id when it has no name.
    pub agent: String,
    /// Real calls of this agent.
    pub calls: u64,
    /// Their average AI score, when any has one.
    pub average_score: Option<f64>,
}

/// Why an inbox row is not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnprocessedState {
    /// The handler failed; the worker tries again later.
    Failed,
    /// Out of attempts; waits for a requeue.
    Dead,
}

/// An event that arrived and was committed but that the worker could not
/// process.
#[derive(Debug, Clone, PartialEq)]
pub struct UnprocessedEvent {
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// The signed event id.
    pub event_id: String,
    /// The delivery id that committed it.
    pub delivery_id: String,
    /// The event name.
    pub event: String,
    /// Failed or dead.
    pub state: UnprocessedState,
    /// How many times the worker tried.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// Failed rows: when the worker tries again (Unix ms).
    pub next_try_ms: Option<i64>,
}

/// The search by id (`GET /?q=`) and what it found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// What was searched for, as typed.
    pub query: String,
    /// What matched, newest first.
    pub hits: Vec<SearchHit>,
}

/// One thing a search found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchHit {
    /// What it is: `call`, `training`, `delivery`, `inbox`, ...
    pub kind: String,
    /// The id that matched.
    pub id: String,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// One line about it (agent, outcome, state, ...).
    pub detail: String,
}

/// Renders the whole page.
pub fn render(data: &DashboardData) -> String {
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
                    meta http-equiv="refresh" content=(data.refresh_secs);
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
                            "Updated " (clock(now, now)) " UTC"
                            @if data.refresh_secs > 0 { ", every " (data.refresh_secs) " s" }
                            ". JSON: "
                            a href="/api/calls" { "calls" } ", "
                            a href="/api/trainings" { "trainings" } ", "
                            a href="/api/deliveries" { "deliveries" } "."
                        }
                    }
                    form.search method="get" role="search" {
                        label for="q" { "Find by id" }
                        input #q type="search" name="q" value=(query)
                            placeholder="call, event or delivery id";
                        button type="submit" { "Search" }
                    }
                }
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
                        span.sub { (thousands(cards.calls_total)) " real calls in all" }
                    }
                    div.card {
                        span.label { "Average AI score" }
                        b { (cards.average_score.map_or_else(|| "–".to_owned(), score)) }
                        span.sub { "over " (thousands(cards.scored_calls)) " scored calls" }
                    }
                    div.card {
                        span.label { "Trainings today" }
                        b { (thousands(cards.trainings_today)) }
                        span.sub { (thousands(cards.trainings_total)) " in all" }
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
                    (figure("Rejections by reason", rejections_chart(&data.rejections_by_reason)))
                    (figure("AI score of real calls", score_chart(&data.score_histogram)))
                    (figure("Waiting for the worker, last hour", backlog_chart(now, &data.backlog)))
                }
                section {
                    h2 {
                        "Delivery log"
                        span.count { (counted(groups.len(), "delivery", "deliveries")) }
                        nav.filters aria-label="Show only" {
                            a.on[data.log_filter.is_none()] href="?" { "all" }
                            @for outcome in [Outcome::Accepted, Outcome::Duplicate, Outcome::Rejected, Outcome::Failed] {
                                a.on[data.log_filter == Some(outcome)]
                                    href=(format!("?outcome={}", outcome.as_str())) { (outcome.as_str()) }
                            }
                        }
                    }
                    (log_table(now, &groups))
                }
                @if !data.unprocessed.is_empty() {
                    (unprocessed_section(now, &data.unprocessed))
                }
                div.split {
                    section {
                        h2 { "Recent calls" span.count { (counted(data.recent_calls.len(), "call", "calls")) } }
                        (activity_table(now, &data.recent_calls, "call", "No real calls yet."))
                    }
                    section {
                        h2 { "Average score per agent" }
                        (agents_table(&data.agent_scores))
                    }
                }
                div.split.even {
                    section {
                        h2 { "Recent trainings" span.count { (counted(data.recent_trainings.len(), "training", "trainings")) } }
                        (activity_table(now, &data.recent_trainings, "training", "No real trainings yet."))
                    }
                    section {
                        h2 { "Test deliveries" span.count { (counted(data.test_events.len(), "event", "events")) } }
                        (test_table(now, &data.test_events))
                    }
                }
                @if data.unprocessed.is_empty() {
                    (unprocessed_section(now, &data.unprocessed))
                }
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
.card b{display:block;font-size:1.6rem;line-height:1.2;margin:.15rem 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card .sub{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
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
td.clip{max-width:13rem;overflow:hidden;text-overflow:ellipsis}
td.clip.wide{max-width:22rem}
td.empty{color:#5b6472;font-style:italic;white-space:normal}
.tag{display:inline-block;padding:0 .45rem;border-radius:4px;font-size:.8rem;background:#eef0f3}
.tag.accepted{background:#dcf5e3;color:#1d6b3a}.tag.duplicate{background:#fff2cc;color:#7a5a00}
.tag.rejected,.tag.dead{background:#fde2e1;color:#9b1c1c}.tag.failed{background:#ffe8d1;color:#8a4300}
.tag.test{background:#e6ecfb;color:#2f4f9b}
.muted{color:#5b6472}
";

// ---------------------------------------------------------------- tables ---

/// A table in its own scrolling box. Each header: its text, whether the
/// column holds numbers (right-aligned), and whether phones may hide it
/// (its cells then carry the class `opt` too).
fn table(headers: &[(&str, bool, bool)], rows: Markup, empty: Option<&str>) -> Markup {
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

fn when(now: i64, at: i64) -> Markup {
    let label = if (0..3_600_000).contains(&now.saturating_sub(at)) {
        ago(now, at)
    } else {
        clock(now, at)
    };
    html! { time datetime=(iso(at)) title=(full(at)) { (label) } }
}

fn log_table(now: i64, groups: &[DeliveryGroup<'_>]) -> Markup {
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
                td.num title=(format!("first attempt {}", full(group.first_ms))) { (group.attempts) }
                td.num.opt { (entry.status) }
                td.clip.wide {
                    (entry.reason.as_deref().unwrap_or(""))
                    @if !earlier.is_empty() {
                        @if entry.reason.is_some() { " · " }
                        span.muted { "before: " (earlier.join(", ")) }
                    }
                }
                td.clip title=[entry.event.as_deref()] { (entry.event.as_deref().unwrap_or("")) }
                td.clip title=[entry.delivery_id.as_deref()] {
                    code { (entry.delivery_id.as_deref().unwrap_or("")) }
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
            ("attempts", true, false),
            ("status", true, true),
            ("reason", false, false),
            ("event", false, false),
            ("delivery id", false, false),
            ("event id", false, true),
            ("verified", false, true),
        ],
        rows,
        groups.is_empty().then_some("No deliveries yet."),
    )
}

fn activity_table(now: i64, rows: &[ActivityRow], id_header: &str, empty: &str) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td { (when(now, row.received_ms)) }
                td.clip title=[row.agent_id.as_deref()] { (agent(row.agent_name.as_deref(), row.agent_id.as_deref())) }
                td.num { (row.ai_score.map_or_else(String::new, score)) }
                td.num { (row.duration_secs.map_or_else(String::new, duration)) }
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
            ("duration", true, false),
            (id_header, false, false),
            ("team member", false, true),
        ],
        body,
        rows.is_empty().then_some(empty),
    )
}

fn agents_table(rows: &[AgentScore]) -> Markup {
    let body = html! {
        @for row in rows {
            tr {
                td.clip title=(row.agent) { (row.agent) }
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

fn unprocessed_section(now: i64, rows: &[UnprocessedEvent]) -> Markup {
    html! {
        section {
            h2 { "Not processed" span.count { (counted(rows.len(), "event", "events")) } }
            (unprocessed_table(now, rows))
        }
    }
}

fn unprocessed_table(now: i64, rows: &[UnprocessedEvent]) -> Markup {
    let body = html! {
        @for row in rows {
            @let state = match row.state {
                UnprocessedState::Failed => "failed",
                UnprocessedState::Dead => "dead",
            };
            tr {
                td { (when(now, row.received_ms)) }
                td { span.tag.(state) { (state) } }
                td.num { (row.attempts) }
                td.clip title=[row.last_error.as_deref()] { (row.last_error.as_deref().unwrap_or("")) }
                td.clip { (row.event) }
                td.clip.opt title=(format!("{} (delivery {})", row.event_id, row.delivery_id)) { code { (row.event_id) } }
                td.opt {
                    @if let Some(next) = row.next_try_ms {
                        (if next > now { format!("in {}", duration_words(next - now)) } else { "now".to_owned() })
                    } @else {
                        span.muted { "needs a requeue" }
                    }
                }
            }
        }
    };
    table(
        &[
            ("received", false, false),
            ("state", false, false),
            ("attempts", true, false),
            ("last error", false, false),
            ("event", false, false),
            ("event id", false, true),
            ("next try", false, true),
        ],
        body,
        rows.is_empty()
            .then_some("Every event that arrived was processed."),
    )
}

fn test_table(now: i64, rows: &[TestEvent]) -> Markup {
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

fn search_results(now: i64, search: &Search) -> Markup {
    let body = html! {
        @for hit in &search.hits {
            tr {
                td { (when(now, hit.received_ms)) }
                td { (hit.kind) }
                td.clip title=(hit.id) { code { (hit.id) } }
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

// ---------------------------------------------------------------- charts ---

/// Size of every chart, in SVG units; CSS scales it to the column.
const CHART_SIZE: (u32, u32) = (520, 250);
const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(0x3d, 0x46, 0x54);
const MUTED: RGBColor = RGBColor(0x7a, 0x83, 0x90);
const GRID: RGBColor = RGBColor(0xe6, 0xe9, 0xee);
const GREEN: RGBColor = RGBColor(0x2e, 0x9e, 0x5b);
const AMBER: RGBColor = RGBColor(0xd6, 0x9e, 0x2e);
const RED: RGBColor = RGBColor(0xd6, 0x45, 0x45);
const BLUE: RGBColor = RGBColor(0x3b, 0x6f, 0xd6);

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

fn figure(caption: &str, svg: Result<String, Box<dyn Error>>) -> Markup {
    figure_with_legend(caption, svg, html! {})
}

fn figure_with_legend(
    caption: &str,
    svg: Result<String, Box<dyn Error>>,
    legend: Markup,
) -> Markup {
    html! {
        figure {
            figcaption { (caption) " " span.legend { (legend) } }
            @match svg {
                // plotters' SVG backend escapes every text and attribute.
                Ok(svg) => (PreEscaped(svg)),
                Err(error) => p.muted { "The chart could not be drawn: " (error.to_string()) },
            }
        }
    }
}

fn svg(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String, Box<dyn Error>> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

fn no_data(root: &Area<'_>, text: &str) -> DrawResult {
    let (w, h) = CHART_SIZE;
    let style = TextStyle::from((FONT, 19).into_font())
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(text, &style, (w as i32 / 2 + 20, h as i32 / 2 - 10))?;
    Ok(())
}

fn label_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 18).into_font()).color(&INK)
}

fn count_label(n: &u64) -> String {
    thousands(*n)
}

fn minutes_label(m: &i64) -> String {
    match *m {
        0 => "now".to_owned(),
        m => format!("{m} min"),
    }
}

/// A y axis top that leaves room above the highest value.
fn y_top(max: u64) -> u64 {
    (max + max / 8).max(max + 1).max(4)
}

fn deliveries_chart(now: i64, minutes: &[MinuteCounts]) -> Result<String, Box<dyn Error>> {
    let window = usize::try_from(WINDOW_MINUTES).unwrap_or(60);
    // slots[i]: the minute `i - 59` minutes from now's.
    let mut slots = vec![[0u64; 3]; window];
    let this_minute = now.div_euclid(60_000);
    for m in minutes {
        let back = this_minute - m.minute_ms.div_euclid(60_000);
        if (0..WINDOW_MINUTES).contains(&back) {
            let slot = &mut slots[window - 1 - usize::try_from(back).unwrap_or(0)];
            slot[0] += m.accepted;
            slot[1] += m.duplicate;
            slot[2] += m.rejected;
        }
    }
    let max = slots.iter().flatten().copied().max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(-(WINDOW_MINUTES - 1)..0i64, 0..y_top(max))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(7)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .x_label_formatter(&minutes_label)
            .label_style(label_style())
            .draw()?;
        if max == 0 {
            return no_data(root, "No deliveries in the last hour");
        }
        // Drawn in this order so that rejections stay on top; the legend
        // is HTML, in the figure's caption.
        for (color, index) in [(GREEN, 0), (AMBER, 1), (RED, 2)] {
            let points = slots.iter().enumerate().map(|(i, s)| {
                (
                    i64::try_from(i).unwrap_or(0) - (WINDOW_MINUTES - 1),
                    s[index],
                )
            });
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// Most reasons drawn; the rest are summed as "other".
const MAX_REASONS: usize = 6;

fn rejections_chart(reasons: &[ReasonCount]) -> Result<String, Box<dyn Error>> {
    let mut sorted: Vec<(String, u64)> = reasons
        .iter()
        .filter(|r| r.count > 0)
        .map(|r| (r.reason.clone(), r.count))
        .collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if sorted.len() > MAX_REASONS {
        let other: u64 = sorted[MAX_REASONS - 1..].iter().map(|r| r.1).sum();
        sorted.truncate(MAX_REASONS - 1);
        sorted.push(("other".to_owned(), other));
    }
    let max = sorted.iter().map(|r| r.1).max().unwrap_or(0);
    // Rows from the top: row i spans y in [n - i - 1, n - i].
    let rows = sorted.len().max(3);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(22)
            .x_label_area_size(28)
            .y_label_area_size(10)
            .build_cartesian_2d(0..y_top(max), 0f64..rows as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(5)
            .x_label_formatter(&count_label)
            .label_style(label_style())
            .draw()?;
        if sorted.is_empty() {
            return no_data(root, "Nothing rejected");
        }
        for (i, (reason, count)) in sorted.iter().enumerate() {
            let top = (rows - i) as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0, top - 0.5), (*count, top - 0.9)],
                RED.mix(0.85).filled(),
            )))?;
            let text = format!("{reason} · {}", thousands(*count));
            chart.draw_series(std::iter::once(Text::new(
                text,
                (0, top - 0.1),
                label_style().pos(Pos::new(HPos::Left, VPos::Top)),
            )))?;
        }
        Ok(())
    })
}

fn score_chart(buckets: &[u64; 10]) -> Result<String, Box<dyn Error>> {
    let max = buckets.iter().copied().max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(0u32..100u32, 0..y_top(max))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(11)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .label_style(label_style())
            .draw()?;
        if max == 0 {
            return no_data(root, "No scored calls yet");
        }
        chart.draw_series(buckets.iter().zip(0u32..).map(|(count, i)| {
            Rectangle::new(
                [(i * 10 + 1, 0), (i * 10 + 9, *count)],
                BLUE.mix(0.8).filled(),
            )
        }))?;
        Ok(())
    })
}

fn backlog_chart(now: i64, samples: &[BacklogSample]) -> Result<String, Box<dyn Error>> {
    let window_ms = WINDOW_MINUTES * 60_000;
    let mut points: Vec<(f64, u64)> = samples
        .iter()
        .filter(|s| (0..=window_ms).contains(&now.saturating_sub(s.at_ms)))
        .map(|s| ((s.at_ms - now) as f64 / 60_000.0, s.waiting))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max = points.iter().map(|p| p.1).max().unwrap_or(0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(58)
            .build_cartesian_2d(-(WINDOW_MINUTES as f64)..0f64, 0..y_top(max))?;
        let minutes = |m: &f64| minutes_label(&(m.round() as i64));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.5))
            .x_labels(7)
            .y_labels(5)
            .y_label_formatter(&count_label)
            .x_label_formatter(&minutes)
            .label_style(label_style())
            .draw()?;
        if points.is_empty() {
            return no_data(root, "No samples yet");
        }
        let mut outline: Vec<(f64, u64)> = Vec::with_capacity(points.len() + 2);
        outline.push((points[0].0, 0));
        outline.extend(points.iter().copied());
        outline.push((points[points.len() - 1].0, 0));
        chart.draw_series(std::iter::once(Polygon::new(
            outline,
            BLUE.mix(0.15).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))?;
        if max == 0 {
            no_data(root, "Caught up: nothing waiting")?;
        }
        Ok(())
    })
}

// ------------------------------------------------------------ formatting ---

fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2026-03-05 12:00:03 UTC`.
fn full(ms: i64) -> String {
    let t = utc(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-03-05T12:00:03Z`, for `<time datetime>`.
fn iso(ms: i64) -> String {
    let t = utc(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `12:00:03` on the day of `now`, `2026-03-05 12:00` on another day (UTC).
fn clock(now: i64, ms: i64) -> String {
    let t = utc(ms);
    if t.date() == utc(now).date() {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    } else {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }
}

/// `3 min ago`; a time ahead of `now` (clock skew) is `just now`.
fn ago(now: i64, ms: i64) -> String {
    let since = now.saturating_sub(ms);
    if since < 5_000 {
        "just now".to_owned()
    } else {
        format!("{} ago", duration_words(since))
    }
}

/// `42 s`, `3 min`, `2 h 5 min`, `3 days`.
fn duration_words(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => match (s / 3_600, s % 3_600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ if s < 2 * 86_400 => "1 day".to_owned(),
        _ => format!("{} days", s / 86_400),
    }
}

/// `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `newest 12 calls`, nothing for none.
fn counted(n: usize, one: &str, many: &str) -> String {
    let n = n as u64;
    if n == 0 {
        return String::new();
    }
    format!(
        "newest {} {}",
        thousands(n),
        if n == 1 { one } else { many }
    )
}

/// `87.5`; whole scores without the `.0`.
fn score(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// `4:05` (minutes and seconds), `1:02:03` past an hour.
fn duration(secs: f64) -> String {
    let total = secs.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn agent(name: Option<&str>, id: Option<&str>) -> String {
    match (name, id) {
        (Some(name), _) => name.to_owned(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_772_712_003_000; // 2026-03-05 12:00:03 UTC

    fn entry(delivery: &str, ago_ms: i64, outcome: Outcome) -> LogEntry {
        LogEntry {
            received_ms: NOW - ago_ms,
            delivery_id: Some(delivery.to_owned()),
            event_id: Some(format!("evt_{delivery}")),
            event: Some("call.uploaded".to_owned()),
            outcome,
            reason: (outcome == Outcome::Rejected).then(|| "invalid_signature".to_owned()),
            status: if outcome == Outcome::Rejected {
                401
            } else {
                200
            },
            verified: outcome != Outcome::Rejected,
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
            delivery_log: vec![entry("d1", 1_000, Outcome::Accepted)],
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
            entry("d2", 1_000, Outcome::Accepted),
            entry("d1", 2_000, Outcome::Accepted),
            entry("d2", 10_000, Outcome::Rejected),
            LogEntry {
                delivery_id: None,
                ..entry("x", 11_000, Outcome::Rejected)
            },
            entry("d2", 30_000, Outcome::Rejected),
            LogEntry {
                delivery_id: None,
                ..entry("y", 40_000, Outcome::Rejected)
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
        assert_eq!(groups[0].latest.outcome, Outcome::Accepted);
        assert_eq!(groups[0].first_ms, NOW - 30_000);
        assert_eq!(
            groups[0].outcomes,
            [(Outcome::Accepted, 1), (Outcome::Rejected, 2)]
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
            Outcome::Accepted,
            Outcome::Duplicate,
            Outcome::Rejected,
            Outcome::Failed,
        ] {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert!("<b>".parse::<Outcome>().is_err());
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
