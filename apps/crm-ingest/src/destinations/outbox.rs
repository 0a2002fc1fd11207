//! The outbox: one row per target (destination or alert) and Kendo event,
//! in the CRM's own database.
//!
//! Rows are added by the projection, in its transaction (the storage's
//! backends write them, [`crate::storage::OutboxRow`]), so
//! an event the CRM projected is never missing its forwarding, and unique
//! `(target, event_id)` makes a replayed event add nothing. The forwarder
//! leases the oldest due rows of a target, sends them and settles each;
//! settling is fenced by the lease's owner and attempt number, so a replica
//! whose lease ran out changes nothing.
//!
//! Two backends, one file each ([`super::sqlite`], [`super::postgres`]),
//! with their SQL in `sql/{sqlite,postgres}/`; this file is the one seam.

use super::postgres::PgOutbox;
use super::rows::{AttemptRecord, Claimed, EventFilter, EventRow, Next, TargetCounts};
use super::sqlite::SqliteOutbox;
use crate::storage::{OutboxRow, Shared, Storage, StorageError};

/// Most characters of an answer (or error) kept per attempt.
pub const ANSWER_CHARS: usize = 300;

/// The outbox on the CRM's database; cheap to clone.
#[derive(Clone)]
pub enum Outbox {
    /// On the CRM's SQLite connections.
    Sqlite(SqliteOutbox),
    /// On a Postgres connection of its own.
    Postgres(PgOutbox),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Outbox(sqlite)",
            Self::Postgres(_) => "Outbox(postgres)",
        })
    }
}

impl Outbox {
    /// The outbox on the storage's database, whose migrations made its
    /// tables.
    pub fn new(storage: &Storage) -> Self {
        match storage.shared() {
            Shared::Sqlite { writer, reader } => Self::Sqlite(SqliteOutbox::new(writer, reader)),
            Shared::Postgres(pg) => Self::Postgres(PgOutbox::new(pg)),
        }
    }

    /// Adds rows outside a projection (the watched alerts); a row already
    /// there for its target and event id is left as it is.
    pub async fn enqueue(&self, rows: Vec<OutboxRow>, now_ms: i64) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(o) => o.enqueue(rows, now_ms).await,
            Self::Postgres(o) => o.enqueue(&rows, now_ms).await,
        }
    }

    /// Leases up to `limit` of `target`'s oldest due rows to `owner` until
    /// `lease_until_ms`; in store order.
    pub async fn claim(
        &self,
        target: &str,
        limit: i64,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let mut rows = match self {
            Self::Sqlite(o) => o.claim(target, limit, owner, now_ms, lease_until_ms).await,
            Self::Postgres(o) => o.claim(target, limit, owner, now_ms, lease_until_ms).await,
        }?;
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Records an attempt and moves its row on; `false` when the lease was
    /// lost (another replica owns the row now).
    pub async fn settle(
        &self,
        row: &Claimed,
        owner: &str,
        next: Next,
        record: AttemptRecord,
    ) -> Result<bool, StorageError> {
        match self {
            Self::Sqlite(o) => o.settle(row, owner, next, record).await,
            Self::Postgres(o) => o.settle(row, owner, next, record).await,
        }
    }

    /// Gives up on `target`'s pending rows whose retry window started at
    /// or before `window_start_ms`; how many.
    pub async fn expire(
        &self,
        target: &str,
        window_start_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        match self {
            Self::Sqlite(o) => o.expire(target, window_start_ms, now_ms).await,
            Self::Postgres(o) => o.expire(target, window_start_ms, now_ms).await,
        }
    }

    /// Each target's counts (targets with rows only).
    pub async fn counts(&self) -> Result<Vec<TargetCounts>, StorageError> {
        match self {
            Self::Sqlite(o) => o.counts().await,
            Self::Postgres(o) => o.counts().await,
        }
    }

    /// A target's rows, newest first, each with its attempts.
    pub async fn events(
        &self,
        target: &str,
        filter: EventFilter,
    ) -> Result<Vec<EventRow>, StorageError> {
        match self {
            Self::Sqlite(o) => o.events(target, filter).await,
            Self::Postgres(o) => o.events(target, filter).await,
        }
    }

    /// Makes rows of `target` pending again, due now, with a new retry
    /// window: the one of `event_id` (delivered or dead), or every dead one.
    pub async fn replay(
        &self,
        target: &str,
        event_id: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        match self {
            Self::Sqlite(o) => o.replay(target, event_id, now_ms).await,
            Self::Postgres(o) => o.replay(target, event_id, now_ms).await,
        }
    }

    /// Each agent's average AI score over its newest `calls` scored real
    /// calls received since `since_ms` (agents with that many), lowest
    /// first. (The CRM's `calls`, read here for the alerts.)
    pub async fn agent_averages(
        &self,
        calls: i64,
        since_ms: i64,
    ) -> Result<Vec<(String, f64)>, StorageError> {
        match self {
            Self::Sqlite(o) => o.agent_averages(calls, since_ms).await,
            Self::Postgres(o) => o.agent_averages(calls, since_ms).await,
        }
    }

    /// Deletes delivered rows settled before `before_ms`; how many.
    pub async fn purge(&self, before_ms: i64) -> Result<u64, StorageError> {
        match self {
            Self::Sqlite(o) => o.purge(before_ms).await,
            Self::Postgres(o) => o.purge(before_ms).await,
        }
    }
}

/// `text` cut to [`ANSWER_CHARS`] characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(ANSWER_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
