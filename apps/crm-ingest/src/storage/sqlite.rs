//! The CRM's tables on SQLite: one writer connection (SQLite has one writer
//! per file; the inbox's shares the file, waiting up to [`BUSY_TIMEOUT`])
//! and one reader, each behind a mutex and used on the blocking pool
//! ([`run`]). Every write is one `BEGIN IMMEDIATE` transaction. SQL in
//! `sql/sqlite/`, and `sql/common/` with its `$n` read as `?n`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::common::{
    COUNTS, DELIVERIES_PAGE, PRUNE_DELIVERIES, PRUNE_REJECTIONS, PRUNE_UNVERIFIED, REJECTIONS_PAGE,
    UPSERT_PAYLOAD_CHANGE, UPSERT_REJECTION,
};
use super::migrations::{self, SCHEMA_VERSION};
use super::outbox_rows::OutboxRow;
use super::projection::ProjectionBatch;
use super::rows::ProjectedRow;
use super::{
    format_ms, now_ms, Backend, Cell, DeliveryRow, LogBatch, Param, PayloadChange, Prune,
    RejectionRow, Shared, StorageError, TableCounts, UNVERIFIED_KEEP,
};

/// How long a statement waits for a lock held by another connection (the
/// inbox's writer shares the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection sleeps between tries for a lock another holds
/// ([`retry_while_busy`]).
const BUSY_POLL: Duration = Duration::from_micros(100);
/// A busy-handler call this long after the previous one on the same thread
/// starts a new wait ([`retry_while_busy`]).
const NEW_WAIT_AFTER: Duration = Duration::from_millis(50);

const INSERT_CALL: &str = include_str!("../../sql/sqlite/insert_call.sql");
const INSERT_TRAINING: &str = include_str!("../../sql/sqlite/insert_training.sql");
const INSERT_DELIVERY: &str = include_str!("../../sql/sqlite/insert_delivery.sql");
const INSERT_UNVERIFIED: &str = include_str!("../../sql/sqlite/insert_unverified.sql");
const INSERT_OUTBOX: &str = include_str!("../../sql/sqlite/insert.sql");
/// How many pruned rows the log's search index keeps per live one before
/// it is emptied and refilled ([`Backend::index_search`]).
const STALE_PER_LIVE: i64 = 4;
/// Adds the log rows with `?1 < seq <= ?2` to the search index.
const INDEX_DELIVERIES: &str = concat!(
    "INSERT INTO deliveries_search (rowid, text) SELECT seq, ",
    crate::search_text!(deliveries),
    " FROM deliveries WHERE seq > ?1 AND seq <= ?2"
);

/// The CRM's SQLite connections.
pub(super) struct Sqlite {
    /// Projections, the delivery log, the outbox's changes.
    writer: Arc<Mutex<Connection>>,
    /// The dashboard, the API, the outbox's console.
    reader: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens the file at `path` (creating it), migrated to the newest
    /// schema.
    pub(super) async fn open(path: PathBuf) -> Result<Self, StorageError> {
        tokio::task::spawn_blocking(move || {
            let what = format!(
                "could not open the database {} (check CRM_DB: its directory must exist and be writable)",
                path.display()
            );
            let mut writer = open_connection(&path).map_err(|e| StorageError::new(&what, e))?;
            migrate(&mut writer).map_err(|e| {
                StorageError::new(format!("could not migrate the database {}", path.display()), e)
            })?;
            let reader = open_connection(&path).map_err(|e| StorageError::new(&what, e))?;
            #[cfg(feature = "query-log")]
            let reader = {
                let mut reader = reader;
                reader.trace(Some(crate::query_log::record));
                reader
            };
            Ok(Self {
                writer: Arc::new(Mutex::new(writer)),
                reader: Arc::new(Mutex::new(reader)),
            })
        })
        .await
        .map_err(|e| StorageError::new("opening the database panicked", e))?
    }

    /// The connections, for the destinations' outbox.
    pub(super) fn shared(&self) -> Shared {
        Shared::Sqlite {
            writer: Arc::clone(&self.writer),
            reader: Arc::clone(&self.reader),
        }
    }
}

impl Backend for Sqlite {
    async fn write_projections(&self, batch: ProjectionBatch) -> Result<(), StorageError> {
        run(
            &self.writer,
            "could not write the projection",
            move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                insert_outbox_rows(&tx, &batch.outbox, now_ms())?;
                for (sql, rows) in [
                    (INSERT_CALL, &batch.calls),
                    (INSERT_TRAINING, &batch.trainings),
                ] {
                    if rows.is_empty() {
                        continue;
                    }
                    let mut insert = tx.prepare_cached(sql)?;
                    for r in rows {
                        insert.execute(rusqlite::params![
                            r.event_id,
                            r.id,
                            r.agent_id,
                            r.agent_name,
                            r.user_id,
                            r.team_member_user_id,
                            r.duration,
                            r.ai_score,
                            r.timestamp,
                            r.is_test,
                            r.received_ms
                        ])?;
                    }
                }
                tx.commit()
            },
        )
        .await
    }

    async fn index_search(&self, most: i64) -> Result<u64, StorageError> {
        run(&self.writer, "could not index the delivery log for search", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut since, mut upto): (i64, i64) = tx.query_row(
                "SELECT since, upto FROM search_indexed WHERE name = 'deliveries'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            // Pruned rows stay in the index (deleting each one from it cost
            // more than all the rest); once they outnumber the live ones
            // STALE_PER_LIVE times, the index is emptied and refilled.
            // (`stale` also counts rows pruned before they were indexed:
            // a reset comes a little early then, never late.)
            let oldest: Option<i64> =
                tx.query_row("SELECT MIN(seq) FROM deliveries", [], |row| row.get(0))?;
            if let Some(oldest) = oldest {
                let stale = oldest - 1 - since;
                let live = (upto - (oldest - 1)).max(most);
                if stale > STALE_PER_LIVE * live {
                    tx.execute(
                        "INSERT INTO deliveries_search (deliveries_search) VALUES ('delete-all')",
                        [],
                    )?;
                    since = oldest - 1;
                    upto = since;
                }
            }
            let newest: Option<i64> = tx.query_row(
                "SELECT MAX(seq) FROM (SELECT seq FROM deliveries WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
                [upto, most],
                |row| row.get(0),
            )?;
            let mut indexed = 0;
            if let Some(newest) = newest {
                indexed = tx.execute(INDEX_DELIVERIES, [upto, newest])?;
                upto = newest;
            }
            tx.execute(
                "UPDATE search_indexed SET since = ?1, upto = ?2 WHERE name = 'deliveries'",
                [since, upto],
            )?;
            tx.commit()?;
            Ok(indexed as u64)
        })
        .await
    }

    async fn record_payload_changes(
        &self,
        changes: Vec<PayloadChange>,
    ) -> Result<(), StorageError> {
        const WHAT: &str = "could not record Kendo payload changes";
        run(&self.writer, WHAT, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut upsert = tx.prepare_cached(&sqlite_sql(UPSERT_PAYLOAD_CHANGE))?;
                for c in &changes {
                    upsert.execute(rusqlite::params![
                        c.event, c.field, c.kind, c.example, c.event_id, c.first_ms, c.count
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn log(&self, batch: LogBatch, prune: Prune) -> Result<(), StorageError> {
        let LogBatch {
            entries,
            unverified,
            rejections,
        } = batch;
        run(
            &self.writer,
            "could not write the delivery log",
            move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(INSERT_DELIVERY)?;
                    for e in &entries {
                        insert.execute(rusqlite::params![
                            e.delivery_id,
                            e.event_id,
                            e.event,
                            e.outcome.as_str(),
                            e.reason,
                            e.status,
                            e.secret_label,
                            e.latency_ms,
                            e.received_ms,
                            e.body,
                            e.headers,
                            e.answer
                        ])?;
                    }
                    let mut insert = tx.prepare_cached(INSERT_UNVERIFIED)?;
                    for u in &unverified {
                        insert.execute(rusqlite::params![
                            u.delivery_id,
                            u.reason,
                            u.status,
                            u.received_ms
                        ])?;
                    }
                    let mut upsert = tx.prepare_cached(&sqlite_sql(UPSERT_REJECTION))?;
                    for r in &rejections {
                        upsert.execute(rusqlite::params![
                            r.minute_ms,
                            r.reason,
                            r.status,
                            i64::try_from(r.count).unwrap_or(i64::MAX),
                            r.last_delivery_id,
                            r.last_ms
                        ])?;
                    }
                }
                if !entries.is_empty() {
                    tx.execute(&sqlite_sql(PRUNE_DELIVERIES), [prune.keep])?;
                }
                if !unverified.is_empty() {
                    tx.execute(&sqlite_sql(PRUNE_UNVERIFIED), [UNVERIFIED_KEEP])?;
                }
                if !rejections.is_empty() {
                    tx.execute(&sqlite_sql(PRUNE_REJECTIONS), [prune.rejections_since_ms])?;
                }
                tx.commit()
            },
        )
        .await
    }

    async fn projected(
        &self,
        what: &'static str,
        sql: String,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, ProjectedRow)>, StorageError> {
        run(&self.reader, what, move |conn| {
            let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
            let rows = stmt.query_map([before, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    ProjectedRow {
                        event_id: row.get(1)?,
                        id: row.get(2)?,
                        agent_id: row.get(3)?,
                        agent_name: row.get(4)?,
                        user_id: row.get(5)?,
                        team_member_user_id: row.get(6)?,
                        duration: row.get(7)?,
                        ai_score: row.get(8)?,
                        timestamp: row.get(9)?,
                        is_test: row.get(10)?,
                        received_ms: row.get(11)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn deliveries(
        &self,
        before: i64,
        outcome: Option<String>,
        reason: Option<String>,
        limit: i64,
    ) -> Result<Vec<(i64, DeliveryRow)>, StorageError> {
        run(
            &self.reader,
            "could not read the delivery log",
            move |conn| {
                let mut stmt = conn.prepare_cached(&sqlite_sql(DELIVERIES_PAGE))?;
                let rows =
                    stmt.query_map(rusqlite::params![before, outcome, reason, limit], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            DeliveryRow {
                                delivery_id: row.get(1)?,
                                event_id: row.get(2)?,
                                event: row.get(3)?,
                                outcome: row.get(4)?,
                                reason: row.get(5)?,
                                status: row.get(6)?,
                                secret_label: row.get(7)?,
                                latency_ms: row.get(8)?,
                                received_at: format_ms(row.get(9)?),
                            },
                        ))
                    })?;
                rows.collect()
            },
        )
        .await
    }

    async fn rejections(&self, limit: i64) -> Result<Vec<RejectionRow>, StorageError> {
        run(&self.reader, "could not read the rejections", move |conn| {
            let mut stmt = conn.prepare_cached(&sqlite_sql(REJECTIONS_PAGE))?;
            let rows = stmt.query_map([limit], |row| {
                Ok(RejectionRow {
                    minute: format_ms(row.get(0)?),
                    reason: row.get(1)?,
                    status: u16::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    last_delivery_id: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn counts(&self) -> Result<TableCounts, StorageError> {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        run(&self.reader, "could not read the database", move |conn| {
            conn.query_row(COUNTS, [], |row| {
                Ok(TableCounts {
                    calls: n(row.get(0)?),
                    test_calls: n(row.get(1)?),
                    trainings: n(row.get(2)?),
                    test_trainings: n(row.get(3)?),
                    deliveries: n(row.get(4)?),
                    rejections: n(row.get(5)?),
                    last_delivery_ms: row.get(6)?,
                })
            })
        })
        .await
    }

    async fn select(
        &self,
        what: &'static str,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<Cell>>, StorageError> {
        let sql = sqlite_sql(sql);
        run(&self.reader, what, move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let columns = stmt.column_count();
            let values = params.into_iter().map(|p| match p {
                Param::Int(v) => Value::Integer(v),
                Param::Text(v) => Value::Text(v),
                Param::Bool(v) => Value::Integer(v.into()),
            });
            let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut cells = Vec::with_capacity(columns);
                for i in 0..columns {
                    cells.push(match row.get_ref(i)? {
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Real(v) => Cell::Real(v),
                        ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                        ValueRef::Null | ValueRef::Blob(_) => Cell::Null,
                    });
                }
                out.push(cells);
            }
            Ok(out)
        })
        .await
    }
}

/// A query's `$n` placeholders as SQLite's `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The busy handler: tries again every [`BUSY_POLL`] until [`BUSY_TIMEOUT`]
/// has passed. SQLite's own (`busy_timeout`) sleeps longer and
/// longer, up to 100 ms between tries: beside the inbox's writer, which
/// commits all the time under load, the projection slept through the
/// moments the lock was free and fell behind ingest.
fn retry_while_busy(attempt: i32) -> bool {
    thread_local! {
        // This thread's current wait: when it began and when SQLite last
        // called. SQLite calls on the waiting thread, `attempt` 0 first;
        // a pause since the last call also means a new wait.
        static WAIT: std::cell::Cell<Option<(std::time::Instant, std::time::Instant)>> =
            const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let began = WAIT.with(|wait| {
        let began = match wait.get() {
            Some((began, last)) if attempt != 0 && now.duration_since(last) < NEW_WAIT_AFTER => {
                began
            }
            _ => now,
        };
        wait.set(Some((began, now)));
        began
    });
    if now.duration_since(began) >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(retry_while_busy))?;
    let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // FULL: a projection is on disk before its inbox row is marked done.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A page cache that holds the hot indexes (SQLite's default is 2 MiB),
    // and reads through mmap.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "mmap_size", 256_i64 << 20)?;
    Ok(conn)
}

/// Runs the schema versions `conn` is missing, in one exclusive
/// transaction.
fn migrate(conn: &mut Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let legacy: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox')",
        [],
        |row| row.get(0),
    )?;
    if legacy {
        return Err(
            "it was created by an earlier crm_ingest (with its own `inbox` table), \
                    whose schema this version does not migrate: point CRM_DB at a new file"
                .into(),
        );
    }
    tx.execute_batch("CREATE TABLE IF NOT EXISTS crm_schema (version INTEGER NOT NULL)")?;
    let version: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM crm_schema", [], |row| row.get(0))?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(format!(
            "it has CRM schema version {version}, newer than this app's {SCHEMA_VERSION}; \
             use a newer build"
        )
        .into());
    }
    for (v, script) in migrations::versions(&migrations::SQLITE) {
        if version < v {
            tx.execute_batch(script)?;
            tx.execute("INSERT INTO crm_schema (version) VALUES (?1)", [v])?;
            tracing::info!(version = v, "CRM tables migrated (SQLite)");
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs `f` on the blocking pool with the connection locked.
pub(crate) async fn run<T, F>(
    conn: &Arc<Mutex<Connection>>,
    what: &'static str,
    f: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await
    .map_err(|e| StorageError::new(what, e))?
    .map_err(|e| StorageError::new(what, e))
}

/// Adds outbox `rows` in the caller's transaction: the projection's, or
/// the outbox's own when an alert is stored alone.
pub(crate) fn insert_outbox_rows(
    tx: &rusqlite::Transaction<'_>,
    rows: &[OutboxRow],
    now_ms: i64,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(INSERT_OUTBOX)?;
    for row in rows {
        insert.execute(rusqlite::params![
            row.target,
            row.event_id,
            row.event,
            row.body,
            now_ms
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("SELECT MAX(version) FROM crm_schema", [], |row| row.get(0))
            .expect("a version")
    }

    #[test]
    fn a_version_1_database_is_migrated_to_the_newest_keeping_its_rows() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(migrations::SQLITE[0])
            .expect("version 1");
        conn.execute_batch(
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (1);
             INSERT INTO calls (event_id, call_id, is_test, received_ms) VALUES ('e1', 'c1', 0, 5);
             INSERT INTO calls (event_id, call_id, agent_name, ai_score, is_test, received_ms)
                 VALUES ('e2', 'c2', 'Ana', 80, 0, 900001), ('e3', 'c3', 'Ana', 2e9, 0, 900002),
                        ('e4', 'c4', 'Ana', 10, 1, 900003);",
        )
        .expect("a version 1 database");
        migrate(&mut conn).expect("migrated");
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM calls", [], |row| row.get(0))
            .expect("calls");
        assert_eq!(kept, 4);
        // Version 9 counted the existing real calls per quarter hour.
        let arrivals: Vec<(String, i64, i64)> = conn
            .prepare("SELECT kind, quarter, n FROM arrivals")
            .and_then(|mut rows| {
                rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect()
            })
            .expect("the quarter hours counted");
        assert_eq!(
            arrivals,
            [("call".to_owned(), 0, 1), ("call".to_owned(), 1, 2)]
        );
        // Version 11 summed the existing real scored calls per agent and
        // quarter hour (scores clamped to +-1e9, the test call left out).
        let scores: Vec<(String, i64, i64, f64)> = conn
            .prepare("SELECT agent, quarter, scored, score_sum FROM agent_quarters")
            .and_then(|mut rows| {
                rows.query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect()
            })
            .expect("the agents' quarter hours");
        assert_eq!(scores, [("Ana".to_owned(), 1, 2, 80.0 + 1e9)]);
        conn.execute(
            INSERT_UNVERIFIED,
            rusqlite::params![None::<String>, "invalid_signature", 401, 6],
        )
        .expect("the unverified table exists");
        // Running it again changes nothing.
        migrate(&mut conn).expect("migrated again");
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_7_database_whose_outbox_the_old_app_made_is_migrated() {
        // Before version 8 the outbox created its tables itself at start.
        let mut conn = Connection::open_in_memory().expect("open");
        for script in &migrations::SQLITE[..7] {
            conn.execute_batch(script).expect("versions 1 to 7");
        }
        conn.execute_batch(
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (7);",
        )
        .expect("a version 7 database");
        conn.execute_batch(migrations::SQLITE[7])
            .expect("the old app's outbox tables");
        conn.execute(
            include_str!("../../sql/sqlite/insert.sql"),
            rusqlite::params!["zapier", "e1", "call.uploaded", b"{}".to_vec(), 5],
        )
        .expect("an outbox row");
        migrate(&mut conn).expect("migrated");
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM crm_outbox", [], |row| row.get(0))
            .expect("the outbox");
        assert_eq!(kept, 1);
    }

    #[test]
    fn a_write_waits_for_a_lock_another_connection_holds() {
        // The inbox's writer shares the file: without a busy handler (or
        // with one that gave up early) this fails at once with SQLITE_BUSY.
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("crm.db");
        let conn = open_connection(&path).expect("opened");
        let other = Connection::open(&path).expect("a second connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("the lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").expect("released");
        });
        conn.execute_batch("CREATE TABLE waited (x INTEGER)")
            .expect("written once the lock is free");
        release.join().expect("the other connection");
    }

    #[test]
    fn a_write_gives_up_on_a_lock_held_past_the_timeout() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("crm.db");
        let conn = open_connection(&path).expect("opened");
        let other = Connection::open(&path).expect("a second connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("the lock");
        let error = conn
            .execute_batch("CREATE TABLE never (x INTEGER)")
            .expect_err("the lock is never released");
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy),
            "{error}"
        );
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_with_what_to_do() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (99);",
        )
        .expect("a newer database");
        let error = migrate(&mut conn).expect_err("refused").to_string();
        assert!(error.contains("version 99"), "{error}");
        assert!(error.contains("use a newer build"), "{error}");
    }
}
