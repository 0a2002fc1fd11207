//! What the dashboard shows, as plain rows and numbers already computed by
//! the caller (one SQL query each); times are Unix milliseconds.

use std::collections::HashMap;

use crate::outcome::DeliveryOutcome;

/// How long without a verified delivery before the page warns, by default.
pub const DEFAULT_QUIET_AFTER_SECS: u64 = 15 * 60;

/// How often the page refreshes (in place; without scripts it reloads), by default.
pub const DEFAULT_REFRESH_SECS: u32 = 15;

/// Width of the delivery-per-minute and backlog charts' window.
pub(super) const WINDOW_MINUTES: i64 = 60;

/// Everything the dashboard shows, computed by the caller.
#[derive(Debug, Clone)]
pub struct DashboardData {
    /// When the data was read (Unix ms). Relative times ("3 min ago") and the
    /// last-hour charts are measured from it.
    pub now_ms: i64,
    /// Seconds between refreshes in place (`/assets/console.js`; without
    /// scripts, `<meta http-equiv="refresh">`); 0 turns refreshing off.
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
    pub delivery_log: Vec<LogRow>,
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
    /// The newest changes in Kendo's payloads, with the first example of
    /// each (shown when there are any).
    pub payload_changes: Vec<PayloadChangeRow>,
    /// The search box (`GET ?q=`): its query and what it found.
    pub search: Option<Search>,
    /// The delivery log shows only this outcome (`GET ?outcome=`).
    pub log_filter: Option<DeliveryOutcome>,
    /// The zone times are shown in, and whose midnight starts "today"
    /// (`CRM_TIME_ZONE`).
    pub time_zone: jiff::tz::TimeZone,
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
            payload_changes: Vec::new(),
            search: None,
            log_filter: None,
            time_zone: jiff::tz::TimeZone::UTC,
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

/// One attempt in the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// `X-Kendo-Delivery-Id`, when the request had one.
    pub delivery_id: Option<String>,
    /// The event id, when the body could be read.
    pub event_id: Option<String>,
    /// The event name, when the body could be read.
    pub event: Option<String>,
    /// What happened.
    pub outcome: DeliveryOutcome,
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
    pub latest: &'a LogRow,
    /// How many attempts the log holds for this delivery.
    pub attempts: usize,
    /// When the first attempt in the log arrived.
    pub first_ms: i64,
    /// Each outcome and how many attempts had it, in order of first sight
    /// (newest first).
    pub outcomes: Vec<(DeliveryOutcome, usize)>,
}

/// Groups log entries (newest first) by delivery id, keeping the order of
/// each delivery's newest attempt. Entries without a delivery id stay alone.
pub fn group_attempts(entries: &[LogRow]) -> Vec<DeliveryGroup<'_>> {
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

/// A change in Kendo's payloads: a field of a known event that was missing,
/// of another type, or new, with the first example seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayloadChangeRow {
    /// The event name.
    pub event: String,
    /// The field of `data`.
    pub field: String,
    /// `missing`, `other_type` or `new`.
    pub kind: String,
    /// The first value seen (JSON), for `other_type` and `new`.
    pub example: Option<String>,
    /// The event that showed it first.
    pub event_id: String,
    /// When it was first and last seen (Unix ms).
    pub first_ms: i64,
    /// When it was last seen (Unix ms).
    pub last_ms: i64,
    /// How many deliveries showed it.
    pub count: u64,
}
