//! The CRM's tables on Postgres: a writer connection (projections, the
//! payload changes), one for the delivery log, and a reader connection
//! (the dashboard and the API), each a [`Pg`]. Each write is one
//! transaction, holding its connection alone meanwhile ([`Pg::exclusive`]);
//! reads are pipelined on the reader. Replicas migrate under an advisory
//! lock. SQL in `sql/postgres/`, and `sql/common/`.

use std::future::Future;
use std::time::Duration;

use kendo_webhooks_inbox::PostgresTls;
use tokio::sync::{RwLock, RwLockMappedWriteGuard, RwLockReadGuard, RwLockWriteGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::common::{
    COUNTS, DELIVERIES_PAGE, PRUNE_DELIVERIES, PRUNE_REJECTIONS, PRUNE_UNVERIFIED, REJECTIONS_PAGE,
    UPSERT_PAYLOAD_CHANGE, UPSERT_REJECTION,
};
use super::migrations::{self, POSTGRES_TRIGRAM, SCHEMA_VERSION};
use super::outbox_rows::OutboxRow;
use super::projection::ProjectionBatch;
use super::rows::ProjectedRow;
use super::{
    format_ms, now_ms, Backend, Cell, DeliveryRow, LogBatch, LogRecord, Param, PayloadChange,
    Prune, RejectionRow, Shared, StorageError, TableCounts, UNVERIFIED_KEEP,
};

/// Longest wait for one statement (or a connection).
const PG_TIMEOUT: Duration = Duration::from_secs(5);
/// Key of the advisory lock that serialises the CRM's migrations across
/// replicas.
const PG_MIGRATION_LOCK: i64 = 0x6372_6d31;

const INSERT_CALLS: &str = include_str!("../../sql/postgres/insert_calls.sql");
const INSERT_TRAININGS: &str = include_str!("../../sql/postgres/insert_trainings.sql");
const INSERT_DELIVERIES: &str = include_str!("../../sql/postgres/insert_deliveries.sql");
const INSERT_UNVERIFIED: &str = include_str!("../../sql/postgres/insert_unverified.sql");
const INSERT_OUTBOX: &str = include_str!("../../sql/postgres/insert.sql");

/// One statement's parameters.
type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The CRM's Postgres connections.
pub(super) struct Postgres {
    /// Projections and the payload changes, one transaction at a time.
    writer: Pg,
    /// The delivery log's batches: its own connection, so a log
    /// transaction (one per batch of requests, at full ingest speed) never
    /// holds the worker's projection back, nor the other way round.
    log_writer: Pg,
    /// The dashboard and the API: a slow query never holds up a writer,
    /// which would otherwise wait behind it on one pipelined connection.
    reader: Pg,
}

impl Postgres {
    /// Connects to `url` and migrates the CRM's tables to the newest
    /// schema.
    pub(super) async fn open(url: &str) -> Result<Self, StorageError> {
        let writer = Pg::connect(url).await?;
        let log_writer = writer.sibling();
        let reader = writer.sibling();
        Ok(Self {
            writer,
            log_writer,
            reader,
        })
    }

    /// A connection of its own, for the destinations' outbox.
    pub(super) fn shared(&self) -> Shared {
        Shared::Postgres(Box::new(self.writer.sibling()))
    }
}

impl Backend for Postgres {
    async fn write_projections(&self, batch: ProjectionBatch) -> Result<(), StorageError> {
        const WHAT: &str = "could not write the projection";
        let outbox = PgOutboxRows::new(&batch.outbox, now_ms());
        let calls = ProjectedColumns::new(&batch.calls);
        let trainings = ProjectedColumns::new(&batch.trainings);
        let mut client = self.writer.exclusive(WHAT).await?;
        let tx = timed(WHAT, client.transaction()).await?;
        if !outbox.is_empty() {
            timed(WHAT, outbox.insert(&tx)).await?;
        }
        for (sql, rows) in [(INSERT_CALLS, &calls), (INSERT_TRAININGS, &trainings)] {
            if !rows.event_ids.is_empty() {
                timed(WHAT, tx.execute(sql, &rows.params())).await?;
            }
        }
        timed(WHAT, tx.commit()).await
    }

    async fn record_payload_changes(
        &self,
        changes: Vec<PayloadChange>,
    ) -> Result<(), StorageError> {
        const WHAT: &str = "could not record Kendo payload changes";
        let mut client = self.writer.exclusive(WHAT).await?;
        let tx = timed(WHAT, client.transaction()).await?;
        for c in &changes {
            let example = c.example.as_deref().map(pg_text);
            let params: &Params<'_> = &[
                &pg_text(&c.event),
                &pg_text(&c.field),
                &c.kind,
                &example,
                &pg_text(&c.event_id),
                &c.first_ms,
                &c.count,
            ];
            timed(WHAT, tx.execute(UPSERT_PAYLOAD_CHANGE, params)).await?;
        }
        timed(WHAT, tx.commit()).await
    }

    async fn index_search(&self, _most: i64) -> Result<u64, StorageError> {
        // The trigram indexes are kept by Postgres on every insert.
        Ok(0)
    }

    async fn log(&self, batch: LogBatch, prune: Prune) -> Result<(), StorageError> {
        const WHAT: &str = "could not write the delivery log";
        let LogBatch {
            entries,
            unverified,
            rejections,
        } = batch;
        let texts = |f: fn(&LogRecord) -> Option<&str>| -> Vec<Option<String>> {
            entries.iter().map(|e| f(e).map(pg_text)).collect()
        };
        let delivery_ids = texts(|e| e.delivery_id.as_deref());
        let event_ids = texts(|e| e.event_id.as_deref());
        let events = texts(|e| e.event.as_deref());
        let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
        let reasons: Vec<Option<&str>> = entries.iter().map(|e| e.reason).collect();
        let statuses: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
        let labels = texts(|e| e.secret_label.as_deref());
        let latencies: Vec<Option<f64>> = entries.iter().map(|e| e.latency_ms).collect();
        let received: Vec<i64> = entries.iter().map(|e| e.received_ms).collect();
        let bodies = texts(|e| e.body.as_deref());
        let headers = texts(|e| e.headers.as_deref());
        let answers = texts(|e| e.answer.as_deref());
        let log: &Params<'_> = &[
            &delivery_ids,
            &event_ids,
            &events,
            &outcomes,
            &reasons,
            &statuses,
            &labels,
            &latencies,
            &received,
            &bodies,
            &headers,
            &answers,
        ];
        let u_delivery_ids: Vec<Option<String>> = unverified
            .iter()
            .map(|u| u.delivery_id.as_deref().map(pg_text))
            .collect();
        let u_reasons: Vec<&str> = unverified.iter().map(|u| u.reason).collect();
        let u_statuses: Vec<i32> = unverified.iter().map(|u| i32::from(u.status)).collect();
        let u_received: Vec<i64> = unverified.iter().map(|u| u.received_ms).collect();
        let attempts: &Params<'_> = &[&u_delivery_ids, &u_reasons, &u_statuses, &u_received];

        let mut client = self.log_writer.exclusive(WHAT).await?;
        let tx = timed(WHAT, client.transaction()).await?;
        if !entries.is_empty() {
            timed(WHAT, tx.execute(INSERT_DELIVERIES, log)).await?;
        }
        if !unverified.is_empty() {
            timed(WHAT, tx.execute(INSERT_UNVERIFIED, attempts)).await?;
        }
        for r in &rejections {
            let status = i32::from(r.status);
            let count = i64::try_from(r.count).unwrap_or(i64::MAX);
            let last = r.last_delivery_id.as_deref().map(pg_text);
            let params: &Params<'_> =
                &[&r.minute_ms, &r.reason, &status, &count, &last, &r.last_ms];
            timed(WHAT, tx.execute(UPSERT_REJECTION, params)).await?;
        }
        if !entries.is_empty() {
            timed(WHAT, tx.execute(PRUNE_DELIVERIES, &[&prune.keep])).await?;
        }
        if !unverified.is_empty() {
            timed(WHAT, tx.execute(PRUNE_UNVERIFIED, &[&UNVERIFIED_KEEP])).await?;
        }
        if !rejections.is_empty() {
            let since: &Params<'_> = &[&prune.rejections_since_ms];
            timed(WHAT, tx.execute(PRUNE_REJECTIONS, since)).await?;
        }
        timed(WHAT, tx.commit()).await
    }

    async fn projected(
        &self,
        what: &'static str,
        sql: String,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, ProjectedRow)>, StorageError> {
        let rows = self.reader.query(what, &sql, &[&before, &limit]).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<_, i64>(0),
                    ProjectedRow {
                        event_id: row.get(1),
                        id: row.get(2),
                        agent_id: row.get(3),
                        agent_name: row.get(4),
                        user_id: row.get(5),
                        team_member_user_id: row.get(6),
                        duration: row.get(7),
                        ai_score: row.get(8),
                        timestamp: row.get(9),
                        is_test: row.get(10),
                        received_ms: row.get(11),
                    },
                )
            })
            .collect())
    }

    async fn deliveries(
        &self,
        before: i64,
        outcome: Option<String>,
        reason: Option<String>,
        limit: i64,
    ) -> Result<Vec<(i64, DeliveryRow)>, StorageError> {
        let rows = self
            .reader
            .query(
                "could not read the delivery log",
                DELIVERIES_PAGE,
                &[&before, &outcome, &reason, &limit],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<_, i64>(0),
                    DeliveryRow {
                        delivery_id: row.get(1),
                        event_id: row.get(2),
                        event: row.get(3),
                        outcome: row.get(4),
                        reason: row.get(5),
                        status: u16::try_from(row.get::<_, i32>(6)).unwrap_or(0),
                        secret_label: row.get(7),
                        latency_ms: row.get(8),
                        received_at: format_ms(row.get(9)),
                    },
                )
            })
            .collect())
    }

    async fn rejections(&self, limit: i64) -> Result<Vec<RejectionRow>, StorageError> {
        let rows = self
            .reader
            .query("could not read the rejections", REJECTIONS_PAGE, &[&limit])
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| RejectionRow {
                minute: format_ms(row.get(0)),
                reason: row.get(1),
                status: u16::try_from(row.get::<_, i32>(2)).unwrap_or(0),
                count: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                last_delivery_id: row.get(4),
            })
            .collect())
    }

    async fn counts(&self) -> Result<TableCounts, StorageError> {
        const WHAT: &str = "could not read the database";
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = self.reader.query(WHAT, COUNTS, &[]).await?;
        let row = rows
            .first()
            .ok_or_else(|| StorageError::new(WHAT, "no row"))?;
        Ok(TableCounts {
            calls: n(row.get(0)),
            test_calls: n(row.get(1)),
            trainings: n(row.get(2)),
            test_trainings: n(row.get(3)),
            deliveries: n(row.get(4)),
            rejections: n(row.get(5)),
            last_delivery_ms: row.get(6),
        })
    }

    async fn select(
        &self,
        what: &'static str,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<Cell>>, StorageError> {
        let params: Vec<Box<dyn ToSql + Sync + Send>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Int(v) => Box::new(v),
                    Param::Text(v) => Box::new(v),
                    Param::Bool(v) => Box::new(v),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let rows = self.reader.query(what, sql, &refs).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| pg_cell(row, i).map_err(|e| StorageError::new(what, e)))
                    .collect()
            })
            .collect()
    }
}

/// A batch of `calls` or `trainings` rows as one array per column, for
/// `unnest`.
struct ProjectedColumns {
    event_ids: Vec<String>,
    ids: Vec<String>,
    agent_ids: Vec<Option<String>>,
    agent_names: Vec<Option<String>>,
    user_ids: Vec<Option<String>>,
    members: Vec<Option<String>>,
    durations: Vec<Option<f64>>,
    scores: Vec<Option<f64>>,
    timestamps: Vec<Option<String>>,
    tests: Vec<bool>,
    received: Vec<i64>,
}

impl ProjectedColumns {
    fn new(rows: &[ProjectedRow]) -> Self {
        let text = |f: fn(&ProjectedRow) -> Option<&String>| -> Vec<Option<String>> {
            rows.iter().map(|r| f(r).map(|v| pg_text(v))).collect()
        };
        Self {
            event_ids: rows.iter().map(|r| pg_text(&r.event_id)).collect(),
            ids: rows.iter().map(|r| pg_text(&r.id)).collect(),
            agent_ids: text(|r| r.agent_id.as_ref()),
            agent_names: text(|r| r.agent_name.as_ref()),
            user_ids: text(|r| r.user_id.as_ref()),
            members: text(|r| r.team_member_user_id.as_ref()),
            durations: rows.iter().map(|r| r.duration).collect(),
            scores: rows.iter().map(|r| r.ai_score).collect(),
            timestamps: text(|r| r.timestamp.as_ref()),
            tests: rows.iter().map(|r| r.is_test).collect(),
            received: rows.iter().map(|r| r.received_ms).collect(),
        }
    }

    /// The parameters of `insert_calls.sql` and `insert_trainings.sql`.
    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.event_ids,
            &self.ids,
            &self.agent_ids,
            &self.agent_names,
            &self.user_ids,
            &self.members,
            &self.durations,
            &self.scores,
            &self.timestamps,
            &self.tests,
            &self.received,
        ]
    }
}

/// `future` (a statement) within [`PG_TIMEOUT`], its error saying `what`
/// failed.
async fn timed<T>(
    what: &'static str,
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(PG_TIMEOUT, future)
        .await
        .map_err(|e| StorageError::new(what, e))?
        .map_err(|e| StorageError::new(what, e))
}

/// One Postgres connection, opened again on next use after it was lost.
/// Statements share it, pipelined ([`Self::execute`], [`Self::query`]); a
/// transaction has it alone ([`Self::exclusive`]), so no other statement
/// can land inside one.
pub(crate) struct Pg {
    config: tokio_postgres::Config,
    tls: PostgresTls,
    client: RwLock<Option<Client>>,
}

impl Pg {
    /// Connects to `url` and migrates the CRM's tables.
    async fn connect(url: &str) -> Result<Self, StorageError> {
        const WHAT: &str = "could not connect to Postgres (CRM_DATABASE_URL)";
        // TLS as the URL's sslmode and sslrootcert ask, like the inbox.
        let (url, tls) = PostgresTls::from_url(url).map_err(|e| StorageError::new(WHAT, e))?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| StorageError::new(WHAT, e))?;
        let mut client = connect(&config, &tls)
            .await
            .map_err(|e| StorageError::new(WHAT, e))?;
        migrate(&mut client)
            .await
            .map_err(|e| StorageError::new("could not migrate the CRM tables in Postgres", e))?;
        Ok(Self {
            config,
            tls,
            client: RwLock::new(Some(client)),
        })
    }

    /// A connection of its own to the same database, opened on first use.
    fn sibling(&self) -> Self {
        Self {
            config: self.config.clone(),
            tls: self.tls.clone(),
            client: RwLock::new(None),
        }
    }

    /// The slot, held alone, with an open connection in it.
    async fn connected(
        &self,
        what: &'static str,
    ) -> Result<RwLockWriteGuard<'_, Option<Client>>, StorageError> {
        let mut slot = self.client.write().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let client = connect(&self.config, &self.tls)
                .await
                .map_err(|e| StorageError::new(what, e))?;
            *slot = Some(client);
        }
        Ok(slot)
    }

    /// The connection alone, for a transaction: once the statements in
    /// flight are done, and holding back the others until it is dropped.
    pub(crate) async fn exclusive(
        &self,
        what: &'static str,
    ) -> Result<RwLockMappedWriteGuard<'_, Client>, StorageError> {
        RwLockWriteGuard::try_map(self.connected(what).await?, Option::as_mut)
            .map_err(|_| StorageError::new(what, "no connection"))
    }

    /// The connection, shared with the other statements.
    async fn shared(
        &self,
        what: &'static str,
    ) -> Result<RwLockReadGuard<'_, Client>, StorageError> {
        let slot = self.client.read().await;
        if let Ok(client) =
            RwLockReadGuard::try_map(slot, |slot| slot.as_ref().filter(|c| !c.is_closed()))
        {
            return Ok(client);
        }
        RwLockWriteGuard::try_downgrade_map(self.connected(what).await?, Option::as_ref)
            .map_err(|_| StorageError::new(what, "no connection"))
    }

    /// Runs one statement; the number of rows it changed.
    pub(crate) async fn execute(
        &self,
        what: &'static str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, StorageError> {
        let client = self.shared(what).await?;
        timed(what, client.execute(sql, params)).await
    }

    /// Runs one query; its rows.
    pub(crate) async fn query(
        &self,
        what: &'static str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let client = self.shared(what).await?;
        timed(what, client.query(sql, params)).await
    }
}

async fn connect(
    config: &tokio_postgres::Config,
    tls: &PostgresTls,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    let (client, connection) =
        tokio::time::timeout(PG_TIMEOUT, config.connect(tls.clone())).await??;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "Postgres connection lost; reconnecting on next use");
        }
    });
    Ok(client)
}

/// Runs the schema versions the database is missing, in one transaction
/// under an advisory lock (replicas starting together migrate once).
async fn migrate(client: &mut Client) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS crm_schema (version INTEGER NOT NULL)")
        .await?;
    let version: Option<i32> = tx
        .query_one("SELECT MAX(version) FROM crm_schema", &[])
        .await?
        .get(0);
    let version = i64::from(version.unwrap_or(0));
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the CRM schema is at version {version}, newer than this app's {SCHEMA_VERSION}; \
             use a newer build"
        )
        .into());
    }
    for (v, script) in migrations::versions(&migrations::POSTGRES) {
        if version < v {
            if v == POSTGRES_TRIGRAM && !trigram_available(&mut tx).await {
                tracing::warn!(
                    "the pg_trgm extension is not available (CREATE EXTENSION pg_trgm failed): \
                     searches scan their table instead of an index; install it (Debian's \
                     postgresql package ships it) or have a superuser run CREATE EXTENSION \
                     pg_trgm, then drop the CRM's schema version 6 row to build the indexes"
                );
            } else {
                tx.batch_execute(script).await?;
            }
            let v = i32::try_from(v)?;
            tx.execute("INSERT INTO crm_schema (version) VALUES ($1)", &[&v])
                .await?;
            tracing::info!(version = v, "CRM tables migrated (Postgres)");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Whether `pg_trgm` is (or could be made) available, in a savepoint so a
/// refusal leaves the migration's transaction usable.
async fn trigram_available(tx: &mut tokio_postgres::Transaction<'_>) -> bool {
    let Ok(savepoint) = tx.savepoint("pg_trgm").await else {
        return false;
    };
    match savepoint
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .await
    {
        Ok(()) => savepoint.commit().await.is_ok(),
        Err(error) => {
            tracing::debug!(%error, "CREATE EXTENSION pg_trgm");
            let _ = savepoint.rollback().await;
            false
        }
    }
}

/// One Postgres value as a [`Cell`], by its column's type.
fn pg_cell(row: &tokio_postgres::Row, i: usize) -> Result<Cell, tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    Ok(if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?
            .map_or(Cell::Null, Cell::Real)
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)?
            .map_or(Cell::Null, |v| Cell::Real(v.into()))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else {
        // TEXT, VARCHAR, NAME; any other type fails here, saying which.
        row.try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text)
    })
}

/// Text as Postgres can store it: a NUL (which its `text` cannot hold)
/// becomes U+FFFD.
pub(crate) fn pg_text(value: &str) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{fffd}")
    } else {
        value.to_owned()
    }
}

/// A batch of outbox rows as the parameters of `insert.sql` (one array per
/// column): added in the projection's transaction, or alone (the watched
/// alerts, through the destinations' `PgOutbox`).
pub(crate) struct PgOutboxRows {
    targets: Vec<String>,
    event_ids: Vec<String>,
    events: Vec<String>,
    bodies: Vec<Vec<u8>>,
    now_ms: i64,
}

impl PgOutboxRows {
    /// The statement that adds them.
    pub(crate) const INSERT: &'static str = INSERT_OUTBOX;

    pub(crate) fn new(rows: &[OutboxRow], now_ms: i64) -> Self {
        Self {
            targets: rows.iter().map(|r| pg_text(&r.target)).collect(),
            event_ids: rows.iter().map(|r| pg_text(&r.event_id)).collect(),
            events: rows.iter().map(|r| pg_text(&r.event)).collect(),
            bodies: rows.iter().map(|r| r.body.clone()).collect(),
            now_ms,
        }
    }

    /// Whether there is nothing to add.
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Adds them in the caller's transaction (the projection's).
    async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        tx.execute(INSERT_OUTBOX, &self.params()).await
    }

    /// The parameters of [`Self::INSERT`].
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.targets,
            &self.event_ids,
            &self.events,
            &self.bodies,
            &self.now_ms,
        ]
    }
}
