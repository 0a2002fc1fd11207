//! The outbox on Postgres: a connection of its own (sends never wait behind
//! the projection's statements, and the reverse); every change is one
//! statement, so replicas share the rows through `FOR UPDATE SKIP LOCKED`
//! and fenced settles. SQL in `sql/postgres/`; the tables are the CRM's
//! schema version 8 (`sql/postgres/migrations/008_outbox.sql`).

use std::sync::Arc;

use super::rows::{AttemptRecord, AttemptRow, Claimed, EventFilter, EventRow, Next, TargetCounts};
use crate::storage::{OutboxRow, Pg, PgOutboxRows, StorageError};

const CLAIM: &str = include_str!("../../sql/postgres/claim.sql");
const SETTLE: &str = include_str!("../../sql/postgres/settle.sql");
const EXPIRE: &str = include_str!("../../sql/postgres/expire.sql");
const SUMMARY: &str = include_str!("../../sql/postgres/summary.sql");
const EVENTS: &str = include_str!("../../sql/postgres/events.sql");
const ATTEMPTS: &str = include_str!("../../sql/postgres/attempts.sql");
const REPLAY: &str = include_str!("../../sql/postgres/replay.sql");
const PURGE: &str = include_str!("../../sql/postgres/purge.sql");
const AGENT_AVERAGES: &str = include_str!("../../sql/postgres/agent_averages.sql");

/// The outbox on a Postgres connection of its own.
#[derive(Clone)]
pub struct PgOutbox {
    pg: Arc<Pg>,
}

impl PgOutbox {
    /// The outbox on `pg` (its tables are the CRM's schema version 8).
    pub(crate) fn new(pg: Box<Pg>) -> Self {
        Self { pg: Arc::from(pg) }
    }

    pub(crate) async fn enqueue(
        &self,
        rows: &[OutboxRow],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let rows = PgOutboxRows::new(rows, now_ms);
        if !rows.is_empty() {
            self.pg
                .execute(
                    "could not add outbox rows",
                    PgOutboxRows::INSERT,
                    &rows.params(),
                )
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn claim(
        &self,
        target: &str,
        limit: i64,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let rows = self
            .pg
            .query(
                "could not lease outbox rows",
                CLAIM,
                &[&target, &now_ms, &owner, &lease_until_ms, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Claimed {
                seq: row.get(0),
                event_id: row.get(1),
                body: row.get(2),
                attempt: i64::from(row.get::<_, i32>(3)),
                since_ms: row.get(4),
            })
            .collect())
    }

    pub(crate) async fn settle(
        &self,
        row: &Claimed,
        owner: &str,
        next: Next,
        record: AttemptRecord,
    ) -> Result<bool, StorageError> {
        let next_ms = match next {
            Next::RetryAt(at) => at,
            _ => record.at_ms,
        };
        let attempt = i32::try_from(row.attempt).unwrap_or(i32::MAX);
        let status = record.status.map(i32::from);
        let answer = record.answer.replace('\0', "\u{fffd}");
        let n = self
            .pg
            .execute(
                "could not settle an outbox row",
                SETTLE,
                &[
                    &row.seq,
                    &owner,
                    &attempt,
                    &next.state(),
                    &next_ms,
                    &record.at_ms,
                    &status,
                    &answer,
                    &record.latency_ms,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn expire(
        &self,
        target: &str,
        window_start_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        self.pg
            .execute(
                "could not expire outbox rows",
                EXPIRE,
                &[&target, &window_start_ms, &now_ms],
            )
            .await
    }

    pub(crate) async fn counts(&self) -> Result<Vec<TargetCounts>, StorageError> {
        let rows = self
            .pg
            .query("could not count the outbox", SUMMARY, &[])
            .await?;
        Ok(rows
            .iter()
            .map(|row| TargetCounts {
                name: row.get(0),
                delivered: row.get(1),
                pending: row.get(2),
                dead: row.get(3),
                failing_since_ms: row.get(4),
                last_delivered_ms: row.get(5),
            })
            .collect())
    }

    pub(crate) async fn events(
        &self,
        target: &str,
        filter: EventFilter,
    ) -> Result<Vec<EventRow>, StorageError> {
        const WHAT: &str = "could not list outbox rows";
        let rows = self
            .pg
            .query(
                WHAT,
                EVENTS,
                &[&target, &filter.state, &filter.event_id, &filter.limit],
            )
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.get(0);
            let history = self
                .pg
                .query(WHAT, ATTEMPTS, &[&seq])
                .await?
                .iter()
                .map(|a| AttemptRow {
                    attempt: i64::from(a.get::<_, i32>(1)),
                    at_ms: a.get(2),
                    status: a.get::<_, Option<i32>>(3).map(i64::from),
                    answer: a.get(4),
                    latency_ms: a.get(5),
                })
                .collect();
            events.push(EventRow {
                seq,
                event_id: row.get(1),
                event: row.get(2),
                state: row.get(3),
                attempts: i64::from(row.get::<_, i32>(4)),
                created_ms: row.get(5),
                settled_ms: row.get(6),
                next_ms: row.get(7),
                last_status: row.get::<_, Option<i32>>(8).map(i64::from),
                last_answer: row.get(9),
                history,
            });
        }
        Ok(events)
    }

    pub(crate) async fn replay(
        &self,
        target: &str,
        event_id: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        self.pg
            .execute(
                "could not replay outbox rows",
                REPLAY,
                &[&target, &event_id, &now_ms],
            )
            .await
    }

    pub(crate) async fn agent_averages(
        &self,
        calls: i64,
        since_ms: i64,
    ) -> Result<Vec<(String, f64)>, StorageError> {
        let rows = self
            .pg
            .query(
                "could not read the agents' averages",
                AGENT_AVERAGES,
                &[&calls, &since_ms],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    pub(crate) async fn purge(&self, before_ms: i64) -> Result<u64, StorageError> {
        let rows = self
            .pg
            .query(
                "could not purge delivered outbox rows",
                PURGE,
                &[&before_ms],
            )
            .await?;
        Ok(rows
            .first()
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }
}
