//! The CRM's own tables, on SQLite or Postgres: the `calls` and `trainings`
//! projections (written by the inbox worker, idempotent on the event id),
//! the delivery log of verified deliveries (its own bound), and the
//! rejections of unverified requests: counted per reason and minute, plus
//! the newest attempts one by one in a table of their own (so a flood of
//! forgeries can never evict a verified entry).
//!
//! The inbox itself is the library's ([`kendo_webhooks_inbox`]), in the
//! same SQLite file or Postgres database.
//!
//! [`Storage`] is the one seam the app calls; each database is a backend
//! of its own file (`sqlite.rs`, `postgres.rs`), with its SQL in
//! `sql/sqlite/` and `sql/postgres/` (and `sql/common/` for what is the same
//! on both: written with `$n` placeholders, SQLite gets them as `?n`). The
//! schema is versioned: `sql/*/migrations/NNN_*.sql`, each version run once,
//! in order, in one transaction with the version row (`migrations.rs`).
//!
//! # Transactions
//!
//! Every write commits at once or not at all, the same on both backends:
//!
//! - a projection ([`Storage::project_batch`]) writes the batch's `calls`,
//!   `trainings` and outbox rows in one transaction (SQLite: `BEGIN
//!   IMMEDIATE` on the writer connection; Postgres: a transaction on the
//!   writer connection, held alone meanwhile);
//! - the delivery log ([`Storage::log`]) writes its entries, unverified
//!   attempts and rejection counts, and prunes each, in one transaction;
//! - the payload changes ([`Storage::record_payload_changes`]) in one
//!   transaction, apart from the projection (their failure never fails it).
//!
//! Reads run on a reader connection of their own, so a slow dashboard query
//! never holds up a writer.

mod common;
mod migrations;
mod outbox_rows;
mod postgres;
mod projection;
mod rows;
mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kendo_webhooks::Delivery;

pub use self::outbox_rows::{OutboxPicker, OutboxRow};
use self::postgres::Postgres;
pub(crate) use self::postgres::{Pg, PgOutboxRows};
use self::projection::{payload_changes, projected_row, ProjectionBatch};
use self::rows::paginate;
pub(crate) use self::rows::ProjectedRow;
pub use self::rows::{
    CallRow, Cell, DeliveryRow, LogBatch, LogRecord, Page, Param, PayloadChange, Projection,
    RejectionCount, RejectionRow, Rows, TableCounts, TestFilter, TrainingRow, UnverifiedEntry,
};
use self::sqlite::Sqlite;
pub(crate) use self::sqlite::{insert_outbox_rows, run};
use crate::database::Database;

/// The text a search looks in, as one SQL expression (the same on both
/// backends, so an expression index matches it): every id, the agent's id
/// and name, the user and team member of a call or training
/// (`search_text!(call_id)`, `search_text!(training_id)`), or a log
/// entry's ids, event, outcome, reason and raw body
/// (`search_text!(deliveries)`).
#[macro_export]
macro_rules! search_text {
    (deliveries) => {
        "(COALESCE(delivery_id, '') || ' | ' || COALESCE(event_id, '') || ' | ' || \
          COALESCE(event, '') || ' | ' || outcome || ' | ' || COALESCE(reason, '') || ' | ' || \
          COALESCE(body, ''))"
    };
    ($id:ident) => {
        concat!(
            "(",
            stringify!($id),
            " || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || \
              COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || \
              COALESCE(team_member_user_id, ''))"
        )
    };
}

/// Most delivery-log rows [`Storage::index_search`] indexes in one
/// transaction.
pub const SEARCH_INDEX_CHUNK: i64 = 1024;

/// Unverified attempts kept one by one (their per-minute counts are kept
/// for [`crate::config::AppConfig::rejections_keep_minutes`]).
pub const UNVERIFIED_KEEP: i64 = 1_000;

/// A database operation failed; says which one and why.
#[derive(Debug)]
pub struct StorageError {
    what: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    pub(crate) fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// What each database does for [`Storage`]: one implementation per file,
/// with its own SQL. Rows come back with their `seq` for the page cursor.
pub(crate) trait Backend {
    /// Writes a projection batch in one transaction.
    async fn write_projections(&self, batch: ProjectionBatch) -> Result<(), StorageError>;

    /// Adds each change's count, keeping the first example, in one
    /// transaction.
    async fn record_payload_changes(&self, changes: Vec<PayloadChange>)
        -> Result<(), StorageError>;

    /// Writes and prunes the delivery log in one transaction (see
    /// [`Storage::log`]).
    async fn log(&self, batch: LogBatch, prune: Prune) -> Result<(), StorageError>;

    /// Adds up to `most` delivery-log rows not yet in the search index to
    /// it, in one transaction; returns how many (see
    /// [`Storage::index_search`]).
    async fn index_search(&self, most: i64) -> Result<u64, StorageError>;

    /// Runs a page query of `calls` or `trainings` (`$1` the cursor, `$2`
    /// the number of rows).
    async fn projected(
        &self,
        what: &'static str,
        sql: String,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, ProjectedRow)>, StorageError>;

    /// A page of the verified delivery log.
    async fn deliveries(
        &self,
        before: i64,
        outcome: Option<String>,
        reason: Option<String>,
        limit: i64,
    ) -> Result<Vec<(i64, DeliveryRow)>, StorageError>;

    /// The newest `limit` per-minute rejection counts.
    async fn rejections(&self, limit: i64) -> Result<Vec<RejectionRow>, StorageError>;

    /// Table sizes.
    async fn counts(&self) -> Result<TableCounts, StorageError>;

    /// A read-only query written for both backends, as [`Cell`]s.
    async fn select(
        &self,
        what: &'static str,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<Cell>>, StorageError>;
}

/// How much of the delivery log [`Backend::log`] keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prune {
    /// Verified entries kept.
    pub(crate) keep: i64,
    /// Rejection counts of minutes before this (Unix ms) are dropped.
    pub(crate) rejections_since_ms: i64,
}

/// Handle to the CRM's tables; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<Engine>,
    /// Which destinations and alerts take each projected event (issue 20).
    outbox: Option<Arc<dyn OutboxPicker>>,
}

/// The database handles the destinations' outbox shares (issue 20).
pub(crate) enum Shared {
    /// The writer and reader connections.
    Sqlite {
        writer: Arc<std::sync::Mutex<rusqlite::Connection>>,
        reader: Arc<std::sync::Mutex<rusqlite::Connection>>,
    },
    /// A connection of its own, to the same database.
    Postgres(Box<Pg>),
}

/// The backend in use (Postgres boxed: its connections' state is large).
enum Engine {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

/// Calls the same [`Backend`] method on whichever backend is in use.
macro_rules! on_backend {
    ($storage:expr, $backend:ident => $call:expr) => {
        match &*$storage.backend {
            Engine::Sqlite($backend) => $call,
            Engine::Postgres($backend) => $call,
        }
    };
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &*self.backend {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        };
        f.debug_struct("Storage").field("backend", &name).finish()
    }
}

impl Storage {
    /// Opens (creating and migrating) the CRM's tables in `database`.
    pub async fn open(database: &Database) -> Result<Self, StorageError> {
        let backend = match database {
            Database::Sqlite(path) => Engine::Sqlite(Sqlite::open(path.clone()).await?),
            Database::Postgres(url) => Engine::Postgres(Box::new(Postgres::open(url).await?)),
        };
        Ok(Self {
            backend: Arc::new(backend),
            outbox: None,
        })
    }

    /// Adds each projected event's outbox rows, as `picker` picks them,
    /// in the projection's transaction.
    #[must_use]
    pub fn with_outbox(mut self, picker: impl OutboxPicker + 'static) -> Self {
        self.outbox = Some(Arc::new(picker));
        self
    }

    /// What the destinations' outbox needs of the database.
    pub(crate) fn shared(&self) -> Shared {
        match &*self.backend {
            Engine::Sqlite(sqlite) => sqlite.shared(),
            Engine::Postgres(postgres) => postgres.shared(),
        }
    }

    /// Whether the tables are in Postgres (else SQLite): the search
    /// ([`crate::search`]) reads each backend's own text index.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.backend, Engine::Postgres(_))
    }

    /// Writes the projection of one verified delivery; a second call with
    /// the same event id changes nothing.
    pub async fn project(&self, delivery: &Delivery) -> Result<Projection, StorageError> {
        self.project_batch(std::slice::from_ref(delivery))
            .await
            .pop()
            .unwrap_or(Ok(Projection::Ignored))
    }

    /// Writes the projections of a batch of verified deliveries, with their
    /// outbox rows, in one transaction: one commit for the batch. When that
    /// fails, each delivery is written on its own, so one bad row fails
    /// alone. One result per delivery, in order; a second call with the
    /// same event ids changes nothing.
    pub async fn project_batch(
        &self,
        deliveries: &[Delivery],
    ) -> Vec<Result<Projection, StorageError>> {
        let results = self.project_rows(deliveries).await;
        // What Kendo's payloads changed is kept apart: a failure to record it
        // never fails a projection.
        let changes = payload_changes(deliveries, now_ms());
        if !changes.is_empty() {
            if let Err(error) = self.record_payload_changes(changes).await {
                tracing::warn!(%error, "could not record the Kendo payload changes of a batch");
            }
        }
        results
    }

    /// Adds each change's count to `payload_changes`, keeping the first
    /// example of each.
    pub async fn record_payload_changes(
        &self,
        changes: Vec<PayloadChange>,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.record_payload_changes(changes).await)
    }

    async fn project_rows(&self, deliveries: &[Delivery]) -> Vec<Result<Projection, StorageError>> {
        let now = now_ms();
        // Each delivery's projection and outbox rows (issue 20).
        let each: Vec<(Projection, ProjectionBatch)> = deliveries
            .iter()
            .map(|delivery| {
                let mut one = ProjectionBatch {
                    outbox: self
                        .outbox
                        .as_ref()
                        .map_or_else(Vec::new, |o| o.rows(delivery)),
                    ..ProjectionBatch::default()
                };
                let kind = match projected_row(delivery, now) {
                    Some((Projection::Call, row)) => {
                        one.calls.push(row);
                        Projection::Call
                    }
                    Some((Projection::Training, row)) => {
                        one.trainings.push(row);
                        Projection::Training
                    }
                    _ => Projection::Ignored,
                };
                (kind, one)
            })
            .collect();
        let mut batch = ProjectionBatch::default();
        for (_, one) in &each {
            batch.calls.extend(one.calls.iter().cloned());
            batch.trainings.extend(one.trainings.iter().cloned());
            batch.outbox.extend(one.outbox.iter().cloned());
        }
        if batch.is_empty() {
            return each.into_iter().map(|(kind, _)| Ok(kind)).collect();
        }
        match self.write_projections(batch).await {
            Ok(()) => each.into_iter().map(|(kind, _)| Ok(kind)).collect(),
            Err(_) if deliveries.len() > 1 => {
                // One by one: the rows that can be written are, the bad one
                // fails alone.
                let mut results = Vec::with_capacity(each.len());
                for (kind, one) in each {
                    if one.is_empty() {
                        results.push(Ok(kind));
                        continue;
                    }
                    results.push(self.write_projections(one).await.map(|()| kind));
                }
                results
            }
            Err(error) => {
                let error = error.to_string();
                each.into_iter()
                    .map(|(kind, one)| match kind {
                        Projection::Ignored if one.outbox.is_empty() => Ok(kind),
                        _ => Err(StorageError::new(
                            "could not write the projection",
                            error.clone(),
                        )),
                    })
                    .collect()
            }
        }
    }

    async fn write_projections(&self, batch: ProjectionBatch) -> Result<(), StorageError> {
        on_backend!(self, b => b.write_projections(batch).await)
    }

    /// Appends verified entries (then keeps the newest `keep`) and
    /// unverified attempts (then keeps the newest [`UNVERIFIED_KEEP`]), adds
    /// the rejection counts (then drops minutes before
    /// `rejections_since_ms`); all in one transaction.
    pub async fn log(
        &self,
        batch: LogBatch,
        keep: usize,
        rejections_since_ms: i64,
    ) -> Result<(), StorageError> {
        let prune = Prune {
            keep: i64::try_from(keep).unwrap_or(i64::MAX),
            rejections_since_ms,
        };
        on_backend!(self, b => b.log(batch, prune).await)
    }

    /// Adds the delivery-log rows written since the last call to the search
    /// index, [`SEARCH_INDEX_CHUNK`] rows per transaction (so the writer is
    /// never held long), until none is left; returns how many. On SQLite
    /// the log is indexed in bulk like this, about once a second, rather
    /// than row by row in each log commit (schema version 10: that cost
    /// most of ingest's time); searches read the rows not indexed yet
    /// directly, so they miss nothing. On Postgres the trigram indexes
    /// are kept by the database and this does nothing.
    ///
    /// # Errors
    ///
    /// When the database cannot be written; the rows stay for the next call.
    pub async fn index_search(&self) -> Result<u64, StorageError> {
        let mut indexed = 0;
        loop {
            let n = on_backend!(self, b => b.index_search(SEARCH_INDEX_CHUNK).await)?;
            indexed += n;
            if n < SEARCH_INDEX_CHUNK.unsigned_abs() {
                return Ok(indexed);
            }
        }
    }

    /// A page of calls, newest first.
    pub async fn calls(&self, page: Page, test: TestFilter) -> Result<Rows<CallRow>, StorageError> {
        let rows = self
            .projected("calls", "call_id", page, test, "could not read the calls")
            .await?;
        Ok(rows.map(CallRow::from))
    }

    /// A page of trainings, newest first.
    pub async fn trainings(
        &self,
        page: Page,
        test: TestFilter,
    ) -> Result<Rows<TrainingRow>, StorageError> {
        let rows = self
            .projected(
                "trainings",
                "training_id",
                page,
                test,
                "could not read the trainings",
            )
            .await?;
        Ok(rows.map(TrainingRow::from))
    }

    async fn projected(
        &self,
        table: &str,
        id: &str,
        page: Page,
        test: TestFilter,
        what: &'static str,
    ) -> Result<Rows<ProjectedRow>, StorageError> {
        // The one query built here rather than read from a file: its table
        // and its test filter vary (each filter keeps its own index).
        let sql = format!(
            "SELECT seq, event_id, {id}, agent_id, agent_name, user_id, team_member_user_id,
                    duration, ai_score, timestamp, is_test, received_ms
             FROM {table} WHERE seq < $1{} ORDER BY seq DESC LIMIT $2",
            test.sql(),
        );
        let before = page.before.unwrap_or(i64::MAX);
        let limit = page_limit(page.limit);
        let rows = on_backend!(self, b => b.projected(what, sql, before, limit).await)?;
        Ok(paginate(rows, page.limit))
    }

    /// A page of the verified delivery log, newest first, optionally of
    /// one outcome and/or reason.
    pub async fn deliveries(
        &self,
        page: Page,
        outcome: Option<String>,
        reason: Option<String>,
    ) -> Result<Rows<DeliveryRow>, StorageError> {
        let before = page.before.unwrap_or(i64::MAX);
        let limit = page_limit(page.limit);
        let rows = on_backend!(self, b => b.deliveries(before, outcome, reason, limit).await)?;
        Ok(paginate(rows, page.limit))
    }

    /// The newest `limit` per-minute rejection counts.
    pub async fn rejections(&self, limit: usize) -> Result<Vec<RejectionRow>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_backend!(self, b => b.rejections(limit).await)
    }

    /// Table sizes; doubles as the health check (it reads every table).
    pub async fn counts(&self) -> Result<TableCounts, StorageError> {
        on_backend!(self, b => b.counts().await)
    }

    /// Runs one read-only query written once for both backends (`$n`
    /// placeholders; integers compared with `BIGINT` columns, sums cast to
    /// `BIGINT`, as Postgres sums integers to `NUMERIC`) and returns its rows
    /// as [`Cell`]s. The dashboard's queries go through here.
    pub async fn select(
        &self,
        what: &'static str,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<Cell>>, StorageError> {
        on_backend!(self, b => b.select(what, sql, params).await)
    }
}

/// The rows a page query asks for: one more than shown, which says whether
/// a next page exists.
fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with exactly three
/// fractional digits, e.g. `2026-03-05T12:00:00.120Z`.
pub fn format_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ms.to_string(),
    }
}
