//! SQLite storage: schema and migrations, the durable inbox, the `calls` and
//! `trainings` projections, and the bounded delivery log.
//!
//! One write connection (inbox, projector, delivery log) and one read
//! connection (API, dashboard, health), each behind a mutex and only ever
//! used on tokio's blocking pool, so the async runtime never waits on disk.
//! The file is in WAL mode: readers do not block the writer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kendo_webhooks::{Delivery, Event, Rejected, Rejection};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The handler prunes the delivery log when the new entry's sequence number
/// is a multiple of this (the log writer prunes on every batch).
const PRUNE_EVERY: i64 = 64;

/// Schema migrations, applied in order; `PRAGMA user_version` counts the
/// applied ones. Append, never edit.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE inbox (
    event_id     TEXT PRIMARY KEY,
    delivery_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    is_test      INTEGER NOT NULL,
    secret_label TEXT,
    body         BLOB NOT NULL,
    received_ms  INTEGER NOT NULL,
    processed_ms INTEGER,
    projection   TEXT
);
CREATE INDEX inbox_pending ON inbox (received_ms) WHERE processed_ms IS NULL;

CREATE TABLE calls (
    event_id            TEXT PRIMARY KEY REFERENCES inbox (event_id),
    call_id             TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            REAL,
    ai_score            REAL,
    timestamp           TEXT,
    is_test             INTEGER NOT NULL,
    received_ms         INTEGER NOT NULL
);
CREATE INDEX calls_received ON calls (received_ms);

CREATE TABLE trainings (
    event_id            TEXT PRIMARY KEY REFERENCES inbox (event_id),
    training_id         TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            REAL,
    ai_score            REAL,
    timestamp           TEXT,
    is_test             INTEGER NOT NULL,
    received_ms         INTEGER NOT NULL
);
CREATE INDEX trainings_received ON trainings (received_ms);

CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT,
    event_id     TEXT,
    event        TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'rejected')),
    reason       TEXT,
    status       INTEGER NOT NULL,
    verified     INTEGER NOT NULL,
    secret_label TEXT,
    received_ms  INTEGER NOT NULL
);
CREATE INDEX deliveries_received ON deliveries (received_ms);
"];

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub(crate) struct Storage {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    keep_log: usize,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("keep_log", &self.keep_log)
            .finish_non_exhaustive()
    }
}

/// What [`Storage::enqueue`] did with a verified delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// A new inbox row; the worker will project it.
    New,
    /// The event id was already in the inbox (a duplicate the LRU did not
    /// know, for example after a restart): nothing was written but the log.
    AlreadyInInbox,
}

/// What the projector did with one inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Projected {
    /// The row's event id.
    pub(crate) event_id: String,
    /// The row's event name.
    pub(crate) event: String,
    /// Where it went.
    pub(crate) projection: Projection,
}

/// Where an inbox row was projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Projection {
    /// Into `calls`.
    Call,
    /// Into `trainings`.
    Training,
    /// Nowhere: an event this app does not project (logged, kept in the inbox).
    Ignored,
    /// Nowhere: the stored body no longer parses (cannot happen for rows the
    /// layer verified; kept in the inbox for inspection).
    Invalid,
}

impl Projection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Training => "training",
            Self::Ignored => "ignored",
            Self::Invalid => "invalid",
        }
    }
}

/// How a delivery ended, as shown in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Verified, new, written to the inbox.
    Accepted,
    /// Verified, but already processed or in flight.
    Duplicate,
    /// Refused: not verified, malformed, or not storable right now.
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

/// One delivery-log entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEntry {
    /// `X-Kendo-Delivery-Id` as sent (unverified when `verified` is false).
    pub(crate) delivery_id: Option<String>,
    /// The signed event id, when the request got that far.
    pub(crate) event_id: Option<String>,
    /// The signed event name, when the request got that far.
    pub(crate) event: Option<String>,
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// The rejection's stable name; `None` when accepted.
    pub(crate) reason: Option<String>,
    /// The HTTP status answered.
    pub(crate) status: u16,
    /// Whether the signature was verified.
    pub(crate) verified: bool,
    /// Which secret verified it ("current"/"previous").
    pub(crate) secret_label: Option<String>,
    /// When it was received, in Unix milliseconds.
    pub(crate) received_ms: i64,
}

impl LogEntry {
    /// The entry for a request the layer answered itself.
    pub(crate) fn from_rejected(rejected: &Rejected, received_ms: i64) -> Self {
        let reason = rejected.reason();
        let status = rejected.status();
        let outcome = if matches!(reason, Rejection::Duplicate | Rejection::InFlight) {
            Outcome::Duplicate
        } else {
            Outcome::Rejected
        };
        Self {
            delivery_id: rejected.delivery_id().map(str::to_owned),
            event_id: rejected.event_id().map(str::to_owned),
            event: rejected.event_name().map(str::to_owned),
            outcome,
            reason: Some(reason.as_str().to_owned()),
            status: status.as_u16(),
            verified: rejected.is_verified(),
            secret_label: rejected.secret_label().map(str::to_owned),
            received_ms,
        }
    }

    /// The entry for a verified delivery the handler answered.
    pub(crate) fn handled(
        delivery: &Delivery,
        outcome: Outcome,
        reason: Option<&str>,
        status: u16,
        received_ms: i64,
    ) -> Self {
        Self {
            delivery_id: Some(delivery.delivery_id().to_owned()),
            event_id: Some(delivery.event_id().to_owned()),
            event: Some(delivery.event_name().to_owned()),
            outcome,
            reason: reason.map(str::to_owned),
            status,
            verified: true,
            secret_label: delivery.secret_label().map(str::to_owned),
            received_ms,
        }
    }
}

/// A row of `calls`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallRow {
    pub(crate) event_id: String,
    pub(crate) call_id: String,
    pub(crate) agent_id: Option<String>,
    pub(crate) agent_name: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) team_member_user_id: Option<String>,
    pub(crate) duration: Option<f64>,
    pub(crate) ai_score: Option<f64>,
    pub(crate) timestamp: Option<String>,
    pub(crate) is_test: bool,
    pub(crate) received_at: String,
}

/// A row of `trainings`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrainingRow {
    pub(crate) event_id: String,
    pub(crate) training_id: String,
    pub(crate) agent_id: Option<String>,
    pub(crate) agent_name: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) team_member_user_id: Option<String>,
    pub(crate) duration: Option<f64>,
    pub(crate) ai_score: Option<f64>,
    pub(crate) timestamp: Option<String>,
    pub(crate) is_test: bool,
    pub(crate) received_at: String,
}

/// A row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryRow {
    pub(crate) delivery_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) outcome: String,
    pub(crate) reason: Option<String>,
    pub(crate) status: u16,
    pub(crate) verified: bool,
    pub(crate) secret_label: Option<String>,
    pub(crate) received_at: String,
}

/// Table sizes, for the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) trainings: u64,
    pub(crate) inbox: u64,
    pub(crate) inbox_pending: u64,
    pub(crate) deliveries: u64,
}

/// A database operation failed; says which one and why.
#[derive(Debug)]
pub(crate) struct StorageError {
    what: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    fn new(
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

impl Storage {
    /// Opens (creating if needed) and migrates the database at `path`.
    /// `keep_log` is how many delivery-log entries are kept (at least 1).
    pub(crate) async fn open(path: PathBuf, keep_log: usize) -> Result<Self, StorageError> {
        let keep_log = keep_log.max(1);
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
            Ok(Self {
                writer: Arc::new(Mutex::new(writer)),
                reader: Arc::new(Mutex::new(reader)),
                keep_log,
            })
        })
        .await
        .map_err(|e| StorageError::new("opening the database panicked", e))?
    }

    /// Writes a verified delivery into the inbox, idempotent on its event id,
    /// and logs it, in one transaction.
    pub(crate) async fn enqueue(
        &self,
        delivery: Delivery,
        received_ms: i64,
    ) -> Result<Enqueued, StorageError> {
        let keep = self.keep_log;
        run(&self.writer, "could not write the delivery to the inbox", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO inbox
                 (event_id, delivery_id, event, created_at, is_test, secret_label, body, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    delivery.event_id(),
                    delivery.delivery_id(),
                    delivery.event_name(),
                    delivery.created_at(),
                    delivery.is_test(),
                    delivery.secret_label(),
                    delivery.body().as_ref(),
                    received_ms,
                ],
            )?;
            let (enqueued, entry) = if inserted == 1 {
                let entry = LogEntry::handled(&delivery, Outcome::Accepted, None, 200, received_ms);
                (Enqueued::New, entry)
            } else {
                let reason = Some("duplicate");
                let entry = LogEntry::handled(&delivery, Outcome::Duplicate, reason, 200, received_ms);
                (Enqueued::AlreadyInInbox, entry)
            };
            let seq = insert_log_entry(&tx, &entry)?;
            if seq % PRUNE_EVERY == 0 {
                prune_log(&tx, keep)?;
            }
            tx.commit()?;
            Ok(enqueued)
        })
        .await
    }

    /// Projects the oldest unprocessed inbox row, in one transaction;
    /// `None` when the inbox has nothing left to do.
    pub(crate) async fn project_next(&self) -> Result<Option<Projected>, StorageError> {
        run(
            &self.writer,
            "could not project the next inbox row",
            |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let row = tx
                    .query_row(
                        "SELECT event_id, delivery_id, event, body, received_ms FROM inbox
                     WHERE processed_ms IS NULL ORDER BY received_ms, rowid LIMIT 1",
                        [],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, String>(2)?,
                                row.get::<_, Vec<u8>>(3)?,
                                row.get::<_, i64>(4)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((event_id, delivery_id, event, body, received_ms)) = row else {
                    return Ok(None);
                };
                // The body was verified before it was stored; parsing it again
                // with its own event name reproduces the delivery exactly.
                let projection = match Delivery::parse(body, &delivery_id, &event) {
                    Ok(delivery) => project(&tx, &delivery, received_ms)?,
                    Err(_) => Projection::Invalid,
                };
                tx.execute(
                    "UPDATE inbox SET processed_ms = ?1, projection = ?2 WHERE event_id = ?3",
                    params![now_ms(), projection.as_str(), event_id],
                )?;
                tx.commit()?;
                Ok(Some(Projected {
                    event_id,
                    event,
                    projection,
                }))
            },
        )
        .await
    }

    /// Appends entries to the delivery log and prunes it to the newest
    /// `keep_log` entries, in one transaction.
    pub(crate) async fn log(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let keep = self.keep_log;
        run(
            &self.writer,
            "could not write the delivery log",
            move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for entry in &entries {
                    insert_log_entry(&tx, entry)?;
                }
                prune_log(&tx, keep)?;
                tx.commit()
            },
        )
        .await
    }

    /// Calls, newest first; all of them with `limit` `None`.
    pub(crate) async fn calls(&self, limit: Option<usize>) -> Result<Vec<CallRow>, StorageError> {
        run(&self.reader, "could not read the calls", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, call_id, agent_id, agent_name, user_id, team_member_user_id,
                        duration, ai_score, timestamp, is_test, received_ms
                 FROM calls ORDER BY received_ms DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([sql_limit(limit)], |row| {
                Ok(CallRow {
                    event_id: row.get(0)?,
                    call_id: row.get(1)?,
                    agent_id: row.get(2)?,
                    agent_name: row.get(3)?,
                    user_id: row.get(4)?,
                    team_member_user_id: row.get(5)?,
                    duration: row.get(6)?,
                    ai_score: row.get(7)?,
                    timestamp: row.get(8)?,
                    is_test: row.get(9)?,
                    received_at: format_ms(row.get(10)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Trainings, newest first; all of them with `limit` `None`.
    pub(crate) async fn trainings(
        &self,
        limit: Option<usize>,
    ) -> Result<Vec<TrainingRow>, StorageError> {
        run(&self.reader, "could not read the trainings", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, training_id, agent_id, agent_name, user_id, team_member_user_id,
                        duration, ai_score, timestamp, is_test, received_ms
                 FROM trainings ORDER BY received_ms DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([sql_limit(limit)], |row| {
                Ok(TrainingRow {
                    event_id: row.get(0)?,
                    training_id: row.get(1)?,
                    agent_id: row.get(2)?,
                    agent_name: row.get(3)?,
                    user_id: row.get(4)?,
                    team_member_user_id: row.get(5)?,
                    duration: row.get(6)?,
                    ai_score: row.get(7)?,
                    timestamp: row.get(8)?,
                    is_test: row.get(9)?,
                    received_at: format_ms(row.get(10)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The delivery log, newest first; all of it with `limit` `None`.
    pub(crate) async fn deliveries(
        &self,
        limit: Option<usize>,
    ) -> Result<Vec<DeliveryRow>, StorageError> {
        run(
            &self.reader,
            "could not read the delivery log",
            move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT delivery_id, event_id, event, outcome, reason, status, verified,
                        secret_label, received_ms
                 FROM deliveries ORDER BY received_ms DESC, seq DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map([sql_limit(limit)], |row| {
                    Ok(DeliveryRow {
                        delivery_id: row.get(0)?,
                        event_id: row.get(1)?,
                        event: row.get(2)?,
                        outcome: row.get(3)?,
                        reason: row.get(4)?,
                        status: row.get(5)?,
                        verified: row.get(6)?,
                        secret_label: row.get(7)?,
                        received_at: format_ms(row.get(8)?),
                    })
                })?;
                rows.collect()
            },
        )
        .await
    }

    /// Table sizes; doubles as the health check (it reads every table).
    pub(crate) async fn counts(&self) -> Result<Counts, StorageError> {
        run(&self.reader, "could not read the database", |conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM calls), (SELECT COUNT(*) FROM trainings),
                        (SELECT COUNT(*) FROM inbox),
                        (SELECT COUNT(*) FROM inbox WHERE processed_ms IS NULL),
                        (SELECT COUNT(*) FROM deliveries)",
                [],
                |row| {
                    Ok(Counts {
                        calls: row.get(0)?,
                        trainings: row.get(1)?,
                        inbox: row.get(2)?,
                        inbox_pending: row.get(3)?,
                        deliveries: row.get(4)?,
                    })
                },
            )
        })
        .await
    }
}

/// Runs `f` on the blocking pool with the connection locked.
async fn run<T, F>(
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
        // A panic inside a transaction rolls it back on unwind, so the
        // connection is still sound after a poisoned lock.
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await
    .map_err(|e| StorageError::new(what, e))?
    .map_err(|e| StorageError::new(what, e))
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL mode; readers will block the writer");
    }
    // FULL: an inbox row is on disk before the 200 that tells Kendo to stop.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = i64::try_from(MIGRATIONS.len())?;
    if applied > known {
        return Err(format!(
            "it has schema version {applied}, newer than this app's {known}; \
             use a newer build of crm_ingest or another CRM_DB file"
        )
        .into());
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(applied)?) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

/// Inserts the projection of one verified delivery; `INSERT OR IGNORE`
/// keeps a re-run (after a crash between insert and commit cannot happen,
/// but a hand-reset `processed_ms` can) from failing.
fn project(
    tx: &rusqlite::Transaction<'_>,
    delivery: &Delivery,
    received_ms: i64,
) -> rusqlite::Result<Projection> {
    let projection = match delivery.event() {
        Event::CallUploaded(call) => {
            tx.execute(
                "INSERT OR IGNORE INTO calls (event_id, call_id, agent_id, agent_name, user_id,
                     team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    delivery.event_id(),
                    call.call_id,
                    call.agent_id,
                    call.agent_name,
                    call.user_id,
                    call.team_member_user_id,
                    call.duration,
                    call.ai_score,
                    call.timestamp,
                    delivery.is_test(),
                    received_ms,
                ],
            )?;
            Projection::Call
        }
        Event::AiTrainingCompleted(training) => {
            tx.execute(
                "INSERT OR IGNORE INTO trainings (event_id, training_id, agent_id, agent_name,
                     user_id, team_member_user_id, duration, ai_score, timestamp, is_test,
                     received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    delivery.event_id(),
                    training.training_id,
                    training.agent_id,
                    training.agent_name,
                    training.user_id,
                    training.team_member_user_id,
                    training.duration,
                    training.ai_score,
                    training.timestamp,
                    delivery.is_test(),
                    received_ms,
                ],
            )?;
            Projection::Training
        }
        _ => Projection::Ignored,
    };
    Ok(projection)
}

/// Inserts one log entry and returns its sequence number.
fn insert_log_entry(tx: &rusqlite::Transaction<'_>, entry: &LogEntry) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO deliveries (delivery_id, event_id, event, outcome, reason, status,
             verified, secret_label, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        entry.delivery_id,
        entry.event_id,
        entry.event,
        entry.outcome.as_str(),
        entry.reason,
        entry.status,
        entry.verified,
        entry.secret_label,
        entry.received_ms,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Deletes all but the newest `keep` log entries.
fn prune_log(tx: &rusqlite::Transaction<'_>, keep: usize) -> rusqlite::Result<usize> {
    let offset = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "DELETE FROM deliveries WHERE seq <
             (SELECT seq FROM deliveries ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
    )?
    .execute([offset])
}

/// A `LIMIT` value: SQLite reads a negative limit as "no limit".
fn sql_limit(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with exactly three
/// fractional digits, e.g. `2026-03-05T12:00:00.120Z`.
pub(crate) fn format_ms(ms: i64) -> String {
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
