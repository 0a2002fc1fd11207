//! What the dashboard shows, read from the database: one query per table
//! or chart, each written once for SQLite and Postgres (through
//! [`Storage::select`]), and the inbox's backlog sampled over time
//! ([`crate::backlog`]). The page itself is [`crate::views`].

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use kendo_webhooks_inbox::{Inbox, InboxError, RowState, StoredDelivery};

use crate::backlog::BacklogHistory;
use crate::outcome::DeliveryOutcome;
use crate::storage::{now_ms, Cell, Param, Storage, StorageError};
use crate::views::{
    ActivityRow, AgentScore, BacklogSample, Cards, DashboardData, LogRow, MinuteCounts,
    PayloadChangeRow, ReasonCount, Search, SearchHit, TestEvent, UnprocessedEvent,
    UnprocessedState,
};

/// Rows of each table on the page (the JSON API has them all).
pub const RECENT: usize = 20;
/// Verified delivery-log attempts read for the log table (grouped per
/// delivery).
const LOG_ATTEMPTS: usize = 100;
/// Unverified attempts shown beside them: a few, so that a flood of
/// forgeries cannot push the verified ones off the page either.
const UNVERIFIED_SHOWN: usize = 20;
/// Agents in the average-score table.
const AGENTS: usize = 12;
/// Rows each search may find.
const SEARCH_HITS: usize = 50;
/// Rejections-by-reason chart window.
const REASONS_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// The charts' last-hour window.
const HOUR_MS: i64 = 60 * 60 * 1000;

/// The dashboard could not be read.
#[derive(Debug)]
pub enum LoadError {
    /// A CRM table.
    Storage(StorageError),
    /// The inbox.
    Inbox(InboxError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Storage(e) => e.fmt(f),
            Self::Inbox(e) => write!(f, "could not read the inbox: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<StorageError> for LoadError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<InboxError> for LoadError {
    fn from(e: InboxError) -> Self {
        Self::Inbox(e)
    }
}

/// Reads everything the page shows; `query` is the search box's text,
/// `log_filter` the one outcome the delivery log shows.
pub async fn load(
    storage: &Storage,
    inbox: &Inbox,
    backlog: &BacklogHistory,
    query: Option<&str>,
    log_filter: Option<DeliveryOutcome>,
) -> Result<DashboardData, LoadError> {
    load_in(&TimeZone::UTC, storage, inbox, backlog, query, log_filter).await
}

/// [`load`], with "today" starting at midnight in `zone` and the page's
/// times shown in it (`CRM_TIME_ZONE`).
pub async fn load_in(
    zone: &TimeZone,
    storage: &Storage,
    inbox: &Inbox,
    backlog: &BacklogHistory,
    query: Option<&str>,
    log_filter: Option<DeliveryOutcome>,
) -> Result<DashboardData, LoadError> {
    let now = now_ms();
    let counts = inbox.counts().await?;
    let mut cards = cards(storage, crate::local_day::local_midnight(zone, now)).await?;
    cards.waiting = counts.backlog();
    cards.unprocessed = counts.failed + counts.dead;
    let mut oldest = None;
    for state in [RowState::Pending, RowState::Leased, RowState::Failed] {
        if let Some(row) = inbox.list(state, 1).await?.first() {
            let at = unix_ms(row.received_at);
            oldest = Some(oldest.map_or(at, |o: i64| o.min(at)));
        }
    }
    cards.oldest_waiting_ms = oldest;

    Ok(DashboardData {
        now_ms: now,
        cards,
        deliveries_per_minute: per_minute(storage, now - HOUR_MS).await?,
        rejections_by_reason: by_reason(storage, now - REASONS_WINDOW_MS).await?,
        score_histogram: score_histogram(storage).await?,
        // The sampler's history and, not stored (page loads would crowd
        // the hour out of it), the backlog now.
        backlog: {
            let mut samples = backlog.samples();
            samples.push(BacklogSample {
                at_ms: now,
                waiting: counts.backlog(),
            });
            samples
        },
        delivery_log: delivery_log(storage, log_filter).await?,
        recent_calls: activity(storage, "calls", "call_id").await?,
        recent_trainings: activity(storage, "trainings", "training_id").await?,
        test_events: test_events(storage).await?,
        agent_scores: agent_scores(storage).await?,
        unprocessed: unprocessed(inbox).await?,
        payload_changes: payload_changes(storage).await?,
        search: match query.map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => Some(search(storage, q).await?),
            None => None,
        },
        log_filter,
        time_zone: zone.clone(),
        ..DashboardData::default()
    })
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn cell(row: &[Cell], i: usize) -> &Cell {
    row.get(i).unwrap_or(&Cell::Null)
}

/// The quarter hours the `arrivals` table counts real calls and trainings
/// in (schema version 9).
const QUARTER_MS: i64 = 15 * 60 * 1000;

async fn cards(storage: &Storage, midnight: i64) -> Result<Cards, StorageError> {
    // Totals from the aggregates the triggers keep (`call_agents`,
    // `crm_totals`); today's counts from the quarter hours `arrivals` keeps
    // (at most 96 rows), plus, through the (is_test, received_ms) indexes,
    // the rows between a midnight off the quarter hour and the next one;
    // never a scan of `calls` or `trainings`, nor a count of today's rows.
    const SQL: &str = "SELECT
        CAST((SELECT COUNT(*) FROM calls WHERE is_test = $2 AND received_ms >= $1 AND received_ms < $3)
            + (SELECT COALESCE(SUM(n), 0) FROM arrivals WHERE kind = 'call' AND quarter >= $4) AS BIGINT),
        (SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM call_agents),
        (SELECT CASE WHEN SUM(scored) > 0 THEN SUM(score_sum) / SUM(scored) END FROM call_agents),
        (SELECT CAST(COALESCE(SUM(scored), 0) AS BIGINT) FROM call_agents),
        CAST((SELECT COUNT(*) FROM trainings WHERE is_test = $2 AND received_ms >= $1 AND received_ms < $3)
            + (SELECT COALESCE(SUM(n), 0) FROM arrivals WHERE kind = 'training' AND quarter >= $4) AS BIGINT),
        (SELECT n FROM crm_totals WHERE name = 'trainings'),
        (SELECT MAX(received_ms) FROM deliveries WHERE outcome IN ('accepted', 'duplicate'))";
    let first_quarter =
        midnight.div_euclid(QUARTER_MS) + i64::from(midnight.rem_euclid(QUARTER_MS) != 0);
    let rows = storage
        .select(
            "could not read the cards",
            SQL,
            vec![
                Param::Int(midnight),
                Param::Bool(false),
                Param::Int(first_quarter * QUARTER_MS),
                Param::Int(first_quarter),
            ],
        )
        .await?;
    let row = rows.first().map_or(&[][..], Vec::as_slice);
    Ok(Cards {
        calls_today: cell(row, 0).count(),
        calls_total: cell(row, 1).count(),
        average_score: cell(row, 2).real(),
        scored_calls: cell(row, 3).count(),
        trainings_today: cell(row, 4).count(),
        trainings_total: cell(row, 5).count(),
        last_delivery_ms: cell(row, 6).int(),
        ..Cards::default()
    })
}

/// Verified outcomes from the log, unverified rejections from their
/// per-minute counts; `failed` (answered 5xx) counts as rejected.
async fn per_minute(storage: &Storage, since: i64) -> Result<Vec<MinuteCounts>, StorageError> {
    const VERIFIED: &str = "SELECT received_ms / 60000,
            SUM(CASE WHEN outcome = 'accepted' THEN 1 ELSE 0 END),
            SUM(CASE WHEN outcome = 'duplicate' THEN 1 ELSE 0 END),
            SUM(CASE WHEN outcome IN ('rejected', 'failed') THEN 1 ELSE 0 END)
        FROM deliveries WHERE received_ms >= $1 GROUP BY received_ms / 60000";
    const UNVERIFIED: &str = "SELECT minute_ms / 60000, CAST(SUM(count) AS BIGINT)
        FROM rejections WHERE minute_ms >= $1 GROUP BY minute_ms";
    const WHAT: &str = "could not read deliveries per minute";
    let mut minutes: BTreeMap<i64, MinuteCounts> = BTreeMap::new();
    let verified = storage
        .select(WHAT, VERIFIED, vec![Param::Int(since)])
        .await?;
    let unverified = storage
        .select(
            WHAT,
            UNVERIFIED,
            vec![Param::Int(since - since.rem_euclid(60_000))],
        )
        .await?;
    for row in &verified {
        let Some(minute) = cell(row, 0).int() else {
            continue;
        };
        let m = minute_of(&mut minutes, minute);
        m.accepted += cell(row, 1).count();
        m.duplicate += cell(row, 2).count();
        m.rejected += cell(row, 3).count();
    }
    for row in &unverified {
        let Some(minute) = cell(row, 0).int() else {
            continue;
        };
        minute_of(&mut minutes, minute).rejected += cell(row, 1).count();
    }
    Ok(minutes.into_values().collect())
}

fn minute_of(minutes: &mut BTreeMap<i64, MinuteCounts>, minute: i64) -> &mut MinuteCounts {
    minutes.entry(minute).or_insert(MinuteCounts {
        minute_ms: minute * 60_000,
        ..MinuteCounts::default()
    })
}

/// Unverified rejections from their counts, verified ones (and failures)
/// from the log; most frequent first.
async fn by_reason(storage: &Storage, since: i64) -> Result<Vec<ReasonCount>, StorageError> {
    const SQL: &str = "SELECT reason, CAST(SUM(count) AS BIGINT) FROM rejections
            WHERE minute_ms >= $1 GROUP BY reason
        UNION ALL
        SELECT reason, COUNT(*) FROM deliveries
            WHERE received_ms >= $1 AND outcome IN ('rejected', 'failed') AND reason IS NOT NULL
            GROUP BY reason";
    let rows = storage
        .select(
            "could not read rejections by reason",
            SQL,
            vec![Param::Int(since)],
        )
        .await?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        if let Some(reason) = cell(row, 0).text() {
            *counts.entry(reason).or_default() += cell(row, 1).count();
        }
    }
    let mut reasons: Vec<ReasonCount> = counts
        .into_iter()
        .map(|(reason, count)| ReasonCount { reason, count })
        .collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Ok(reasons)
}

async fn score_histogram(storage: &Storage) -> Result<[u64; 10], StorageError> {
    // The buckets the trigger keeps per agent (below 10, then [10, 20) …
    // [80, 90), then 90 and above), summed.
    let columns: Vec<String> = (0..10)
        .map(|i| format!("CAST(COALESCE(SUM(b{i}), 0) AS BIGINT)"))
        .collect();
    let sql = format!("SELECT {} FROM call_agents", columns.join(", "));
    let rows = storage
        .select("could not read the score histogram", &sql, Vec::new())
        .await?;
    let row = rows.first().map_or(&[][..], Vec::as_slice);
    Ok(std::array::from_fn(|i| cell(row, i).count()))
}

/// The newest verified attempts and the newest few unverified ones (which
/// are all `rejected`), newest first, of one outcome or all.
async fn delivery_log(
    storage: &Storage,
    outcome: Option<DeliveryOutcome>,
) -> Result<Vec<LogRow>, StorageError> {
    const WHAT: &str = "could not read the delivery log";
    // Two statements, not `$1 = '' OR outcome = $1`, which no index serves:
    // one outcome walks `deliveries_outcome` backwards, all walk the rowid.
    let filter = if outcome.is_some() {
        "WHERE outcome = $1"
    } else {
        ""
    };
    let verified = format!(
        "SELECT received_ms, delivery_id, event_id, event, outcome, reason, status, secret_label
         FROM deliveries {filter} ORDER BY seq DESC LIMIT {LOG_ATTEMPTS}"
    );
    let unverified = format!(
        "SELECT received_ms, delivery_id, reason, status
         FROM unverified ORDER BY seq DESC LIMIT {UNVERIFIED_SHOWN}"
    );
    let status = |c: &Cell| c.int().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    let only = outcome.map(|o| Param::Text(o.as_str().to_owned()));
    let mut log: Vec<LogRow> = storage
        .select(WHAT, &verified, only.into_iter().collect())
        .await?
        .iter()
        .map(|row| LogRow {
            received_ms: cell(row, 0).int().unwrap_or(0),
            delivery_id: cell(row, 1).text(),
            event_id: cell(row, 2).text(),
            event: cell(row, 3).text(),
            outcome: cell(row, 4)
                .text()
                .and_then(|o| o.parse().ok())
                .unwrap_or(DeliveryOutcome::Failed),
            reason: cell(row, 5).text(),
            status: status(cell(row, 6)),
            verified: true,
            secret_label: cell(row, 7).text(),
        })
        .collect();
    let unverified = match outcome {
        None | Some(DeliveryOutcome::Rejected) => {
            storage.select(WHAT, &unverified, Vec::new()).await?
        }
        Some(_) => Vec::new(),
    };
    log.extend(unverified.iter().map(|row| LogRow {
        received_ms: cell(row, 0).int().unwrap_or(0),
        delivery_id: cell(row, 1).text(),
        event_id: None,
        event: None,
        outcome: DeliveryOutcome::Rejected,
        reason: cell(row, 2).text(),
        status: status(cell(row, 3)),
        verified: false,
        secret_label: None,
    }));
    // Stable: within one millisecond, each table's own order stays.
    log.sort_by_key(|entry| std::cmp::Reverse(entry.received_ms));
    Ok(log)
}

/// The newest real rows of `calls` or `trainings`.
async fn activity(
    storage: &Storage,
    table: &str,
    id: &str,
) -> Result<Vec<ActivityRow>, StorageError> {
    let sql = format!(
        "SELECT received_ms, {id}, event_id, agent_name, agent_id, team_member_user_id,
                duration, ai_score
         FROM {table} WHERE is_test = $1 ORDER BY received_ms DESC, seq DESC LIMIT {RECENT}"
    );
    // `is_test = $1`, not `NOT is_test`: it reads the (is_test, received_ms)
    // index newest first and stops after RECENT rows.
    Ok(storage
        .select(
            "could not read recent activity",
            &sql,
            vec![Param::Bool(false)],
        )
        .await?
        .iter()
        .map(|row| ActivityRow {
            received_ms: cell(row, 0).int().unwrap_or(0),
            id: cell(row, 1).text().unwrap_or_default(),
            event_id: cell(row, 2).text().unwrap_or_default(),
            agent_name: cell(row, 3).text(),
            agent_id: cell(row, 4).text(),
            team_member: cell(row, 5).text(),
            duration_secs: cell(row, 6).real(),
            ai_score: cell(row, 7).real(),
        })
        .collect())
}

async fn test_events(storage: &Storage) -> Result<Vec<TestEvent>, StorageError> {
    let sql = format!(
        "SELECT received_ms, event, id, event_id FROM (
            SELECT received_ms, 'call.uploaded' AS event, call_id AS id, event_id
            FROM calls WHERE is_test = $1 ORDER BY received_ms DESC, seq DESC LIMIT {RECENT}) AS c
         UNION ALL
         SELECT received_ms, event, id, event_id FROM (
            SELECT received_ms, 'ai.training.completed' AS event, training_id AS id, event_id
            FROM trainings WHERE is_test = $1 ORDER BY received_ms DESC, seq DESC LIMIT {RECENT}) AS t
         ORDER BY 1 DESC LIMIT {RECENT}"
    );
    Ok(storage
        .select(
            "could not read the test deliveries",
            &sql,
            vec![Param::Bool(true)],
        )
        .await?
        .iter()
        .map(|row| TestEvent {
            received_ms: cell(row, 0).int().unwrap_or(0),
            event: cell(row, 1).text().unwrap_or_default(),
            id: cell(row, 2).text().unwrap_or_default(),
            event_id: cell(row, 3).text().unwrap_or_default(),
        })
        .collect())
}

/// The newest changes in Kendo's payloads, with the first example of each.
async fn payload_changes(storage: &Storage) -> Result<Vec<PayloadChangeRow>, StorageError> {
    let sql = "SELECT event, field, kind, example, event_id, first_ms, last_ms, count
               FROM payload_changes ORDER BY last_ms DESC, event, field LIMIT 20";
    Ok(storage
        .select("could not read the Kendo payload changes", sql, Vec::new())
        .await?
        .iter()
        .map(|row| PayloadChangeRow {
            event: cell(row, 0).text().unwrap_or_default(),
            field: cell(row, 1).text().unwrap_or_default(),
            kind: cell(row, 2).text().unwrap_or_default(),
            example: cell(row, 3).text(),
            event_id: cell(row, 4).text().unwrap_or_default(),
            first_ms: cell(row, 5).int().unwrap_or(0),
            last_ms: cell(row, 6).int().unwrap_or(0),
            count: cell(row, 7).count(),
        })
        .collect())
}

/// Agents with the most real calls, with their average score.
async fn agent_scores(storage: &Storage) -> Result<Vec<AgentScore>, StorageError> {
    let sql = format!(
        "SELECT agent, calls, CASE WHEN scored > 0 THEN score_sum / scored END
         FROM call_agents ORDER BY calls DESC, agent LIMIT {AGENTS}"
    );
    Ok(storage
        .select("could not read the scores per agent", &sql, Vec::new())
        .await?
        .iter()
        .map(|row| AgentScore {
            agent: cell(row, 0).text().unwrap_or_default(),
            calls: cell(row, 1).count(),
            average_score: cell(row, 2).real(),
        })
        .collect())
}

/// The oldest failed and the oldest dead inbox rows (the inbox lists
/// oldest first, and the oldest have waited longest), oldest first.
async fn unprocessed(inbox: &Inbox) -> Result<Vec<UnprocessedEvent>, InboxError> {
    let mut rows = Vec::new();
    for (state, shown) in [
        (RowState::Failed, UnprocessedState::Failed),
        (RowState::Dead, UnprocessedState::Dead),
    ] {
        rows.extend(
            inbox
                .list(state, RECENT)
                .await?
                .into_iter()
                .map(|row: StoredDelivery| UnprocessedEvent {
                    received_ms: unix_ms(row.received_at),
                    next_try_ms: (shown == UnprocessedState::Failed).then(|| unix_ms(row.next_at)),
                    event_id: row.event_id,
                    delivery_id: row.delivery_id,
                    event: row.event_name,
                    state: shown,
                    attempts: row.attempts,
                    last_error: row.last_error,
                }),
        );
    }
    rows.sort_by_key(|row| row.received_ms);
    Ok(rows)
}

/// Rows with `query` anywhere in an id, an agent's id or name, a team
/// member, or a delivery's raw body ([`crate::search`]), newest first.
async fn search(storage: &Storage, query: &str) -> Result<Search, StorageError> {
    let filters = crate::search::filters::Filters::text(query);
    let query = filters.q.clone().unwrap_or_default();
    if query.is_empty() {
        return Ok(Search {
            query,
            hits: Vec::new(),
        });
    }
    let ms = |at: &str| {
        at.parse::<jiff::Timestamp>()
            .map_or(0, |t| t.as_millisecond())
    };
    let agent = |name: &Option<String>, id: &Option<String>| {
        name.clone()
            .or_else(|| id.clone())
            .unwrap_or_else(|| "unknown agent".to_owned())
    };
    let mut hits = Vec::new();
    for (_, row) in crate::search::query::calls(storage, &filters, None, SEARCH_HITS).await? {
        hits.push(SearchHit {
            received_ms: ms(&row.received_at),
            kind: "call".to_owned(),
            detail: format!(
                "{}{} · event {}",
                if row.is_test { "test · " } else { "" },
                agent(&row.agent_name, &row.agent_id),
                row.event_id
            ),
            id: row.call_id,
        });
    }
    for (_, row) in crate::search::query::trainings(storage, &filters, None, SEARCH_HITS).await? {
        hits.push(SearchHit {
            received_ms: ms(&row.received_at),
            kind: "training".to_owned(),
            detail: format!(
                "{}{} · event {}",
                if row.is_test { "test · " } else { "" },
                agent(&row.agent_name, &row.agent_id),
                row.event_id
            ),
            id: row.training_id,
        });
    }
    for (_, row) in crate::search::query::deliveries(storage, &filters, None, SEARCH_HITS).await? {
        let mut detail = row.outcome.clone();
        if let Some(reason) = &row.reason {
            detail.push_str(&format!(" · {reason}"));
        }
        if let Some(event_id) = &row.event_id {
            detail.push_str(&format!(" · event {event_id}"));
        }
        hits.push(SearchHit {
            received_ms: ms(&row.received_at),
            kind: "delivery".to_owned(),
            id: row.delivery_id.or(row.event_id).unwrap_or_default(),
            detail,
        });
    }
    for (_, row) in crate::search::query::unverified(storage, &filters, None, SEARCH_HITS).await? {
        hits.push(SearchHit {
            received_ms: ms(&row.received_at),
            kind: "unverified".to_owned(),
            id: row.delivery_id.unwrap_or_default(),
            detail: format!("rejected · {}", row.reason),
        });
    }
    hits.sort_by_key(|hit| std::cmp::Reverse(hit.received_ms));
    hits.truncate(SEARCH_HITS);
    Ok(Search { query, hits })
}
