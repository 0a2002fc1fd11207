//! The outbox on SQLite: the CRM's writer connection for changes (one
//! writer per file), its reader for the console. SQL in `sql/sqlite/`; the
//! tables are the CRM's schema version 8
//! (`sql/sqlite/migrations/008_outbox.sql`).

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};

use super::rows::{AttemptRecord, AttemptRow, Claimed, EventFilter, EventRow, Next, TargetCounts};
use crate::storage::{insert_outbox_rows, run, OutboxRow, StorageError};

const DUE: &str = include_str!("../../sql/sqlite/due.sql");
const CLAIM: &str = include_str!("../../sql/sqlite/claim.sql");
const SETTLE: &str = include_str!("../../sql/sqlite/settle.sql");
const ATTEMPT: &str = include_str!("../../sql/sqlite/attempt.sql");
const EXPIRE: &str = include_str!("../../sql/sqlite/expire.sql");
const SUMMARY: &str = include_str!("../../sql/sqlite/summary.sql");
const EVENTS: &str = include_str!("../../sql/sqlite/events.sql");
const ATTEMPTS: &str = include_str!("../../sql/sqlite/attempts.sql");
const REPLAY: &str = include_str!("../../sql/sqlite/replay.sql");
const PURGE: &str = include_str!("../../sql/sqlite/purge.sql");
const PURGE_ATTEMPTS: &str = include_str!("../../sql/sqlite/purge_attempts.sql");
const AGENT_AVERAGES: &str = include_str!("../../sql/sqlite/agent_averages.sql");

/// The outbox on the CRM's SQLite connections.
#[derive(Clone)]
pub struct SqliteOutbox {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteOutbox {
    /// The outbox on the CRM's connections (its tables are the CRM's schema
    /// version 8).
    pub(crate) fn new(writer: Arc<Mutex<Connection>>, reader: Arc<Mutex<Connection>>) -> Self {
        Self { writer, reader }
    }

    pub(crate) async fn enqueue(
        &self,
        rows: Vec<OutboxRow>,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        run(&self.writer, "could not add outbox rows", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_outbox_rows(&tx, &rows, now_ms)?;
            tx.commit()
        })
        .await
    }

    pub(crate) async fn claim(
        &self,
        target: &str,
        limit: i64,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let (target, owner) = (target.to_owned(), owner.to_owned());
        let probe = target.clone();
        let due = run(
            &self.reader,
            "could not look for due outbox rows",
            move |conn| {
                conn.prepare_cached(DUE)?
                    .query_row(rusqlite::params![probe, now_ms], |row| {
                        row.get::<_, bool>(0)
                    })
            },
        )
        .await?;
        if !due {
            return Ok(Vec::new());
        }
        run(&self.writer, "could not lease outbox rows", move |conn| {
            let mut claim = conn.prepare_cached(CLAIM)?;
            let rows = claim
                .query_map(
                    rusqlite::params![target, now_ms, owner, lease_until_ms, limit],
                    |row| {
                        Ok(Claimed {
                            seq: row.get(0)?,
                            event_id: row.get(1)?,
                            body: row.get(2)?,
                            attempt: row.get(3)?,
                            since_ms: row.get(4)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn settle(
        &self,
        row: &Claimed,
        owner: &str,
        next: Next,
        record: AttemptRecord,
    ) -> Result<bool, StorageError> {
        let (seq, attempt, owner) = (row.seq, row.attempt, owner.to_owned());
        let next_ms = match next {
            Next::RetryAt(at) => at,
            _ => record.at_ms,
        };
        run(
            &self.writer,
            "could not settle an outbox row",
            move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let status = record.status.map(i64::from);
                let settled = tx.prepare_cached(SETTLE)?.execute(rusqlite::params![
                    seq,
                    owner,
                    attempt,
                    next.state(),
                    next_ms,
                    record.at_ms,
                    status,
                    record.answer
                ])?;
                if settled == 1 {
                    tx.prepare_cached(ATTEMPT)?.execute(rusqlite::params![
                        seq,
                        attempt,
                        record.at_ms,
                        status,
                        record.answer,
                        record.latency_ms
                    ])?;
                }
                tx.commit()?;
                Ok(settled == 1)
            },
        )
        .await
    }

    pub(crate) async fn expire(
        &self,
        target: &str,
        window_start_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        let target = target.to_owned();
        run(&self.writer, "could not expire outbox rows", move |conn| {
            let n = conn.prepare_cached(EXPIRE)?.execute(rusqlite::params![
                target,
                window_start_ms,
                now_ms
            ])?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn counts(&self) -> Result<Vec<TargetCounts>, StorageError> {
        run(&self.reader, "could not count the outbox", |conn| {
            let mut summary = conn.prepare_cached(SUMMARY)?;
            let rows = summary
                .query_map([], |row| {
                    Ok(TargetCounts {
                        name: row.get(0)?,
                        delivered: row.get(1)?,
                        pending: row.get(2)?,
                        dead: row.get(3)?,
                        failing_since_ms: row.get(4)?,
                        last_delivered_ms: row.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn events(
        &self,
        target: &str,
        filter: EventFilter,
    ) -> Result<Vec<EventRow>, StorageError> {
        let target = target.to_owned();
        run(&self.reader, "could not list outbox rows", move |conn| {
            let mut events = conn.prepare_cached(EVENTS)?;
            let mut rows = events
                .query_map(
                    rusqlite::params![target, filter.state, filter.event_id, filter.limit],
                    |row| {
                        Ok(EventRow {
                            seq: row.get(0)?,
                            event_id: row.get(1)?,
                            event: row.get(2)?,
                            state: row.get(3)?,
                            attempts: row.get(4)?,
                            created_ms: row.get(5)?,
                            settled_ms: row.get(6)?,
                            next_ms: row.get(7)?,
                            last_status: row.get(8)?,
                            last_answer: row.get(9)?,
                            history: Vec::new(),
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut attempts = conn.prepare_cached(ATTEMPTS)?;
            for row in &mut rows {
                row.history = attempts
                    .query_map([row.seq], |a| {
                        Ok(AttemptRow {
                            attempt: a.get(1)?,
                            at_ms: a.get(2)?,
                            status: a.get(3)?,
                            answer: a.get(4)?,
                            latency_ms: a.get(5)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn replay(
        &self,
        target: &str,
        event_id: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        let (target, event_id) = (target.to_owned(), event_id.map(str::to_owned));
        run(&self.writer, "could not replay outbox rows", move |conn| {
            let n = conn
                .prepare_cached(REPLAY)?
                .execute(rusqlite::params![target, event_id, now_ms])?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn agent_averages(
        &self,
        calls: i64,
        since_ms: i64,
    ) -> Result<Vec<(String, f64)>, StorageError> {
        run(
            &self.reader,
            "could not read the agents' averages",
            move |conn| {
                let mut averages = conn.prepare_cached(AGENT_AVERAGES)?;
                let rows = averages
                    .query_map(rusqlite::params![calls, since_ms], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            },
        )
        .await
    }

    pub(crate) async fn purge(&self, before_ms: i64) -> Result<u64, StorageError> {
        run(
            &self.writer,
            "could not purge delivered outbox rows",
            move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(PURGE_ATTEMPTS)?.execute([before_ms])?;
                let n = tx.prepare_cached(PURGE)?.execute([before_ms])?;
                tx.commit()?;
                Ok(n as u64)
            },
        )
        .await
    }
}
