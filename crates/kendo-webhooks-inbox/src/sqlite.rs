//! The SQLite backend: one connection on a thread of its own.
//!
//! (About 720 lines and 50 of unit tests: every statement of the backend trait, beside the
//! writer thread and group commit they run on; the schema is in
//! `migrations/sqlite/`.)
//!
//! Every write goes through that thread, in the order asked, so the inbox's
//! own writers never wait on each other's locks. Enqueues waiting in its
//! channel are committed together in one `BEGIN IMMEDIATE` transaction (one
//! fsync in WAL mode with `synchronous=FULL`); while it commits, the next
//! group gathers. Claims, settlements and reads are run one at a time
//! between groups.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{
    from_ms, millis, now_ms, Backend, BoxFuture, Claimed, Counts, Enqueued, InboxError,
    InboxErrorKind, RowState, Settle, StoredDelivery,
};
use kendo_webhooks::Delivery;

/// Schema migrations, applied in order; append, never edit.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "create kendo_inbox",
        include_str!("../migrations/sqlite/0001_inbox.sql"),
    ),
    (
        2,
        "bodies out of the key's b-tree, kept counts, done rows by age",
        include_str!("../migrations/sqlite/0002_scale.sql"),
    ),
];

/// How long a statement waits for a lock held by another connection (or
/// process) before the inbox answers 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the writer sleeps between tries for a lock another connection
/// holds ([`retry_while_busy`]).
const BUSY_POLL: Duration = Duration::from_micros(100);
/// A busy-handler call this long after the previous one on the same thread
/// starts a new wait ([`retry_while_busy`]).
const NEW_WAIT_AFTER: Duration = Duration::from_millis(50);
/// Most deliveries committed in one transaction.
const MAX_GROUP: usize = 1024;
/// Requests queued for the database thread before callers wait.
const CHANNEL: usize = 4096;
/// Page cache of the inbox's connection, in KiB (SQLite's default is 2 MiB:
/// too small once the due index and the event id index outgrow it).
const CACHE_KIB: i64 = 65_536;
/// Bytes of the file read through `mmap` instead of `pread` (reads only;
/// writes still go through the WAL).
const MMAP_BYTES: i64 = 256 << 20;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Command {
    Enqueue(Delivery, oneshot::Sender<Result<Enqueued, InboxError>>),
    Run(Job),
}

pub(crate) struct Sqlite {
    commands: mpsc::Sender<Command>,
    /// Reads (lists, counts) on a connection of their own, so they never
    /// wait behind a group commit.
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    identity: Option<FileIdentity>,
}

impl Sqlite {
    pub(crate) async fn open(path: PathBuf) -> Result<Self, InboxError> {
        let (commands, receiver) = mpsc::channel(CHANNEL);
        let (ready, opened) = oneshot::channel();
        let reader_path = path.clone();
        let own_path = path.clone();
        std::thread::Builder::new()
            .name("kendo-inbox-sqlite".to_owned())
            .spawn(move || match open(&path) {
                Ok(connection) => {
                    let _ = ready.send(Ok(()));
                    let identity = FileIdentity::of(&path);
                    serve(connection, receiver, &path, identity);
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            })
            .map_err(|e| InboxError::unavailable("could not start the SQLite inbox's thread", e))?;
        opened.await.map_err(|_| InboxError::closed())??;
        let reader = tokio::task::spawn_blocking(move || open_reader(&reader_path))
            .await
            .map_err(|_| InboxError::closed())??;
        let identity = FileIdentity::of(&own_path);
        Ok(Self {
            commands,
            reader: Arc::new(Mutex::new(reader)),
            path: own_path,
            identity,
        })
    }

    /// Runs the read-only `job` on the reader connection, on tokio's
    /// blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        job: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, InboxError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let connection = reader.lock().unwrap_or_else(PoisonError::into_inner);
            job(&connection).map_err(|e| unavailable(what, e))
        })
        .await
        .map_err(|_| InboxError::closed())?
    }

    /// Runs `job` on the database thread and returns its result.
    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        job: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, InboxError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let _ = reply.send(job(connection).map_err(|e| unavailable(what, e)));
        });
        self.commands
            .send(Command::Run(job))
            .await
            .map_err(|_| InboxError::closed())?;
        answer.await.map_err(|_| InboxError::closed())?
    }
}

fn unavailable(what: &str, error: rusqlite::Error) -> InboxError {
    let advice = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            " (another connection or process holds a lock on the file; retry later)"
        }
        Some(rusqlite::ErrorCode::DiskFull) => " (the disk is full)",
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => {
            " (the file or its directory is not writable)"
        }
        _ => "",
    };
    InboxError::unavailable(what, format!("{error}{advice}")).caused_by(error)
}

fn open(path: &Path) -> Result<Connection, InboxError> {
    let what = format!(
        "could not open the SQLite inbox {} (its directory must exist and be writable)",
        path.display()
    );
    let mut connection = Connection::open(path).map_err(|e| unavailable(&what, e))?;
    connection
        .busy_handler(Some(retry_while_busy))
        .map_err(|e| unavailable(&what, e))?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| unavailable(&what, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(InboxError::unavailable(
            what,
            format!("it stays in journal mode {mode}, not WAL (an in-memory database cannot be durable)"),
        ));
    }
    connection
        .execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA cache_size = -{CACHE_KIB}; \
             PRAGMA mmap_size = {MMAP_BYTES};"
        ))
        .map_err(|e| unavailable(&what, e))?;
    restrict_permissions(path);
    migrate(&mut connection, path)?;
    Ok(connection)
}

/// The writer's busy handler: tries again every [`BUSY_POLL`] until
/// [`BUSY_TIMEOUT`] has passed. SQLite's own handler
/// (`busy_timeout`) sleeps longer and longer, up to 100 ms between tries:
/// beside another writer of the same file that commits all the time (an
/// app's own tables, as the CRM's), it slept through the moments the lock
/// was free, and ingest and the other writer waited on each other in turns
/// of tens of milliseconds.
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

/// The reader connection: WAL readers see the last commit and never block
/// the writer.
fn open_reader(path: &Path) -> Result<Connection, InboxError> {
    let what = format!(
        "could not open the SQLite inbox {} for reading",
        path.display()
    );
    let connection = Connection::open(path).map_err(|e| unavailable(&what, e))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| unavailable(&what, e))?;
    connection
        .execute_batch(&format!(
            "PRAGMA query_only = ON; PRAGMA cache_size = -{CACHE_KIB}; \
             PRAGMA mmap_size = {MMAP_BYTES};"
        ))
        .map_err(|e| unavailable(&what, e))?;
    Ok(connection)
}

/// The database and its WAL hold every raw body: readable by the owner
/// only (a umask of 022 would leave them world-readable).
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut names = vec![path.as_os_str().to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            names.push(name);
        }
        for name in names {
            let _ = std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Which file a path named when the inbox opened it (device and inode), to
/// notice when it is removed or replaced while the inbox runs: a commit into
/// an unlinked file is durable nowhere anyone will look.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileIdentity(u64, u64);

impl FileIdentity {
    fn of(path: &Path) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| Self(m.dev(), m.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

/// `Err` when the file at `path` is not the one the inbox opened.
fn check_file(path: &Path, opened: Option<FileIdentity>) -> Result<(), InboxError> {
    let Some(opened) = opened else { return Ok(()) };
    match FileIdentity::of(path) {
        Some(now) if now == opened => Ok(()),
        Some(_) => Err(InboxError::unavailable(
            format!(
                "the SQLite inbox {} was replaced while open",
                path.display()
            ),
            "nothing is committed into the old file; restart the process to open the new one",
        )),
        None => Err(InboxError::unavailable(
            format!("the SQLite inbox {} was removed while open", path.display()),
            "nothing is committed into the unlinked file; restore it or restart the process",
        )),
    }
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), InboxError> {
    let fail = |e: rusqlite::Error| {
        InboxError::new(
            InboxErrorKind::Migration,
            format!("could not migrate the SQLite inbox {}", path.display()),
            e,
        )
    };
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS kendo_inbox_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at INTEGER NOT NULL)",
    )
    .map_err(fail)?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM kendo_inbox_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(fail)?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(InboxError::new(
            InboxErrorKind::Migration,
            format!(
                "the SQLite inbox {} is at schema version {current}",
                path.display()
            ),
            format!("this version of kendo-webhooks knows versions up to {newest}: upgrade it"),
        ));
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO kendo_inbox_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now_ms()],
        )
        .map_err(fail)?;
    }
    tx.commit().map_err(fail)
}

/// The database thread: commits groups of enqueues, runs other jobs in
/// between, until every sender is gone.
fn serve(
    mut connection: Connection,
    mut commands: mpsc::Receiver<Command>,
    path: &Path,
    identity: Option<FileIdentity>,
) {
    let mut group = Vec::with_capacity(64);
    let mut deferred: Option<Job> = None;
    loop {
        let command = match deferred.take() {
            Some(job) => Command::Run(job),
            None => match commands.blocking_recv() {
                Some(command) => command,
                None => break,
            },
        };
        match command {
            Command::Run(job) => job(&mut connection),
            Command::Enqueue(delivery, reply) => {
                group.push((delivery, reply));
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Enqueue(delivery, reply)) => group.push((delivery, reply)),
                        Ok(Command::Run(job)) => {
                            deferred = Some(job);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match check_file(path, identity) {
                    Ok(()) => commit_group(&mut connection, &mut group),
                    Err(error) => {
                        for (_, reply) in group.drain(..) {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Commits a group of deliveries in one transaction and answers each.
fn commit_group(
    connection: &mut Connection,
    group: &mut Vec<(Delivery, oneshot::Sender<Result<Enqueued, InboxError>>)>,
) {
    let result = (|| {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let now = now_ms();
            let mut insert = tx.prepare_cached(
                "INSERT INTO kendo_inbox (event_id, delivery_id, event, body, received_at, next_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (event_id) DO NOTHING",
            )?;
            for (delivery, _) in group.iter() {
                let inserted = insert.execute(params![
                    delivery.event_id(),
                    delivery.delivery_id(),
                    delivery.event_name(),
                    delivery.body().as_ref(),
                    now,
                ])?;
                outcomes.push(if inserted == 1 {
                    Enqueued::Stored
                } else {
                    Enqueued::Duplicate
                });
            }
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let error = unavailable("could not commit deliveries to the SQLite inbox", error);
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// A claimed row out of attempts becomes dead.
const CLAIM_DEAD: &str =
    "UPDATE kendo_inbox SET state = 'dead', next_at = ?1, attempts = attempts - 1,
    last_error = ?2 WHERE event_id = ?3";
/// Leases the oldest due rows.
const CLAIM: &str = "UPDATE kendo_inbox SET
    state = 'leased', lease_owner = ?1, next_at = ?2 + ?3, attempts = attempts + 1
 WHERE id IN (
    SELECT id FROM kendo_inbox
    WHERE state IN ('pending', 'leased', 'failed') AND next_at <= ?2
    ORDER BY next_at LIMIT ?4)
 RETURNING event_id, delivery_id, event, body, attempts";
/// Settles the done rows of a batch (their ids as a JSON array).
const SETTLE_DONE: &str = "UPDATE kendo_inbox SET state = 'done', next_at = ?1
 WHERE event_id IN (SELECT value FROM json_each(?2))
   AND state = 'leased' AND lease_owner = ?3";
/// Settles one row.
const SETTLE_ONE: &str =
    "UPDATE kendo_inbox SET state = ?1, next_at = ?2, last_error = coalesce(?3, last_error)
 WHERE event_id = ?4 AND state = 'leased' AND lease_owner = ?5";
/// Renews one lease.
const EXTEND: &str = "UPDATE kendo_inbox SET next_at = ?1
 WHERE event_id = ?2 AND state = 'leased' AND lease_owner = ?3";
/// Deletes the oldest done rows past the retention.
const PURGE: &str = "DELETE FROM kendo_inbox WHERE id IN (
    SELECT id FROM kendo_inbox WHERE state = 'done' AND next_at < ?1
    ORDER BY next_at LIMIT ?2)";
/// Rows per state.
const COUNTS: &str = "SELECT state, n FROM kendo_inbox_counts";
/// Re-queues rows: `?2` names one dead row; else every dead row
/// (`?3 = 0`), or every dead and failed row (`?3 = 1`). The redundant `IN`
/// term puts it on the index of failed and dead rows.
const REQUEUE: &str =
    "UPDATE kendo_inbox SET state = 'pending', attempts = 0, next_at = ?1, lease_owner = NULL
 WHERE state IN ('failed', 'dead')
   AND (state = 'dead' OR ?3 = 1)
   AND (?2 IS NULL OR event_id = ?2)";

/// The hot and operator queries with a name each, for a test that asserts
/// their query plans read indexes.
pub(crate) fn query_plans() -> Vec<(&'static str, String)> {
    let mut queries = vec![
        ("claim: out of attempts", CLAIM_DEAD.to_owned()),
        ("claim", CLAIM.to_owned()),
        ("settle done rows", SETTLE_DONE.to_owned()),
        ("settle one row", SETTLE_ONE.to_owned()),
        ("renew a lease", EXTEND.to_owned()),
        ("purge done rows", PURGE.to_owned()),
        ("counts", COUNTS.to_owned()),
        ("requeue", REQUEUE.to_owned()),
        (
            "duplicate check",
            "SELECT 1 FROM kendo_inbox WHERE event_id = ?1".to_owned(),
        ),
    ];
    for state in [
        RowState::Pending,
        RowState::Leased,
        RowState::Failed,
        RowState::Dead,
        RowState::Done,
    ] {
        queries.push((state.as_str(), list_sql(state)));
    }
    queries
}

fn list_sql(state: RowState) -> String {
    format!(
        "SELECT {COLUMNS} FROM kendo_inbox WHERE state = ?1 AND {} LIMIT ?2",
        super::list_order(state)
    )
}

const COLUMNS: &str =
    "event_id, delivery_id, event, body, state, attempts, last_error, received_at, next_at, lease_owner";

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    let state: String = row.get(4)?;
    Ok(StoredDelivery {
        event_id: row.get(0)?,
        delivery_id: row.get(1)?,
        event_name: row.get(2)?,
        body: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        state: RowState::parse(&state).unwrap_or(RowState::Dead),
        attempts: u32::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        last_error: row.get(6)?,
        received_at: from_ms(row.get(7)?),
        next_at: from_ms(row.get(8)?),
        lease_owner: row.get(9)?,
    })
}

impl Backend for Sqlite {
    fn enqueue(&self, delivery: Delivery) -> BoxFuture<'_, Result<Enqueued, InboxError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Enqueue(delivery, reply))
                .await
                .map_err(|_| InboxError::closed())?;
            answer.await.map_err(|_| InboxError::closed())?
        })
    }

    fn claim(
        &self,
        owner: String,
        limit: usize,
        lease: Duration,
        max_attempts: u32,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, InboxError>> {
        Box::pin(self.run(
            "could not claim rows of the SQLite inbox",
            move |connection| {
                let now = now_ms();
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut claimed = {
                    let mut claim = tx.prepare_cached(CLAIM)?;
                    let rows = claim.query_map(
                        params![
                            owner,
                            now,
                            millis(lease),
                            i64::try_from(limit).unwrap_or(i64::MAX)
                        ],
                        |row| {
                            Ok(Claimed {
                                event_id: row.get(0)?,
                                delivery_id: row.get(1)?,
                                event_name: row.get(2)?,
                                body: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                                attempts: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                            })
                        },
                    )?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                };
                // Only a row whose lease ended unsettled (its worker stopped
                // or hung) can come back out of attempts: it dies here, in
                // the same transaction, instead of a scan of every due row
                // before each claim.
                if claimed.iter().any(|row| row.attempts > max_attempts) {
                    let mut dead = tx.prepare_cached(CLAIM_DEAD)?;
                    for row in claimed.iter().filter(|row| row.attempts > max_attempts) {
                        dead.execute(params![
                            now,
                            super::out_of_attempts(row.attempts, max_attempts),
                            row.event_id
                        ])?;
                    }
                    claimed.retain(|row| row.attempts <= max_attempts);
                }
                tx.commit()?;
                Ok(claimed)
            },
        ))
    }

    fn settle(
        &self,
        owner: String,
        rows: Vec<(String, Settle)>,
    ) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(self.run(
            "could not settle rows of the SQLite inbox",
            move |connection| {
                let now = now_ms();
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    // Done rows (nearly all of them) in one statement; an id
                    // with a NUL, which JSON text would not carry, goes one by one.
                    let done: Vec<&str> = rows
                        .iter()
                        .filter(|(id, how)| matches!(how, Settle::Done) && !id.contains('\0'))
                        .map(|(id, _)| id.as_str())
                        .collect();
                    if !done.is_empty() {
                        let ids = serde_json::to_string(&done).unwrap_or_else(|_| "[]".to_owned());
                        tx.prepare_cached(SETTLE_DONE)?
                            .execute(params![now, ids, owner])?;
                    }
                    let mut settle = tx.prepare_cached(SETTLE_ONE)?;
                    for (event_id, how) in &rows {
                        let (state, at, error) = match how {
                            Settle::Done if !event_id.contains('\0') => continue,
                            Settle::Done => ("done", now, None),
                            Settle::Retry { delay, error } => {
                                ("failed", now.saturating_add(millis(*delay)), Some(error))
                            }
                            Settle::Dead { error } => ("dead", now, Some(error)),
                        };
                        settle.execute(params![state, at, error, event_id, owner])?;
                    }
                }
                tx.commit()
            },
        ))
    }

    fn extend(
        &self,
        owner: String,
        event_ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(self.run(
            "could not renew leases in the SQLite inbox",
            move |connection| {
                let until = now_ms().saturating_add(millis(lease));
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut extend = tx.prepare_cached(EXTEND)?;
                    for event_id in &event_ids {
                        extend.execute(params![until, event_id, owner])?;
                    }
                }
                tx.commit()
            },
        ))
    }

    fn list(
        &self,
        state: RowState,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredDelivery>, InboxError>> {
        Box::pin(self.read(
            "could not list rows of the SQLite inbox",
            move |connection| {
                let mut list = connection.prepare_cached(&list_sql(state))?;
                let rows = list.query_map(
                    params![state.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
                    stored,
                )?;
                rows.collect()
            },
        ))
    }

    fn get(&self, event_id: String) -> BoxFuture<'_, Result<Option<StoredDelivery>, InboxError>> {
        Box::pin(self.read(
            "could not read a row of the SQLite inbox",
            move |connection| {
                let mut get = connection.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM kendo_inbox WHERE event_id = ?1"
                ))?;
                let mut rows = get.query_map(params![event_id], stored)?;
                rows.next().transpose()
            },
        ))
    }

    fn requeue(
        &self,
        event_id: Option<String>,
        failed_too: bool,
    ) -> BoxFuture<'_, Result<u64, InboxError>> {
        Box::pin(self.run(
            "could not re-queue rows of the SQLite inbox",
            move |connection| {
                let changed = connection.prepare_cached(REQUEUE)?.execute(params![
                    now_ms(),
                    event_id,
                    i64::from(failed_too)
                ])?;
                Ok(changed as u64)
            },
        ))
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, InboxError>> {
        Box::pin(
            self.read("could not count rows of the SQLite inbox", |connection| {
                let mut counts = Counts::default();
                // Kept by triggers: five rows, never a scan of the inbox.
                let mut query = connection.prepare_cached(COUNTS)?;
                let rows = query.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (state, n) = row?;
                    counts.set(&state, n);
                }
                Ok(counts)
            }),
        )
    }

    fn purge_done(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<u64, InboxError>> {
        Box::pin(self.run(
            "could not purge done rows of the SQLite inbox",
            move |connection| {
                let before = now_ms().saturating_sub(millis(older_than));
                // The oldest `limit` through the done index: each call holds
                // the writer for that many deletes only.
                let deleted = connection
                    .prepare_cached(PURGE)?
                    .execute(params![before, i64::try_from(limit).unwrap_or(i64::MAX)])?;
                Ok(deleted as u64)
            },
        ))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), InboxError>> {
        if let Err(error) = check_file(&self.path, self.identity) {
            return Box::pin(async move { Err(error) });
        }
        Box::pin(
            self.run("the SQLite inbox cannot be written", |connection| {
                // A real write and fsync, of a row that exists anyway.
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "UPDATE kendo_inbox_counts SET n = n WHERE state = 'dead'",
                    [],
                )?;
                tx.commit()
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn an_unavailable_database_says_what_to_check() {
        for (code, advice) in [
            (ffi::SQLITE_BUSY, "holds a lock on the file"),
            (ffi::SQLITE_LOCKED, "holds a lock on the file"),
            (ffi::SQLITE_FULL, "the disk is full"),
            (ffi::SQLITE_READONLY, "is not writable"),
            (ffi::SQLITE_PERM, "is not writable"),
        ] {
            let error = unavailable("could not commit", failure(code));
            assert!(error.to_string().contains(advice), "{code}: {error}");
            assert!(std::error::Error::source(&error).is_some(), "{code}");
        }
        let other = unavailable("could not commit", failure(ffi::SQLITE_CORRUPT));
        assert!(!other.to_string().contains(" ("), "{other}");
    }

    #[test]
    fn the_writer_waits_for_a_lock_another_connection_holds() {
        // Without a busy handler the write fails at once with SQLITE_BUSY;
        // with one that gave up early, likewise. (That it gives up after
        // BUSY_TIMEOUT is the suite's outage test.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.sqlite3");
        let writer = open(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        writer
            .execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .expect("written once the lock is free");
        release.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_replaced_or_removed_under_the_inbox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.sqlite3");
        std::fs::write(&path, b"opened").unwrap();
        let opened = FileIdentity::of(&path);
        assert!(check_file(&path, FileIdentity::of(&path)).is_ok());

        let other = dir.path().join("other.sqlite3");
        std::fs::write(&other, b"another file").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let replaced = check_file(&path, opened).unwrap_err();
        assert!(replaced.to_string().contains("replaced"), "{replaced}");

        let opened = FileIdentity::of(&path);
        std::fs::remove_file(&path).unwrap();
        let removed = check_file(&path, opened).unwrap_err();
        assert!(removed.to_string().contains("removed"), "{removed}");
        assert!(check_file(&path, None).is_ok(), "no identity, no check");
    }
}
