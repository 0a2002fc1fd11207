//! The Postgres backend: a group-commit writer task with a connection of
//! its own, and one connection for the worker's claims and settlements and
//! for reads.
//!
//! # Why tokio-postgres
//!
//! The inbox needs a handful of fixed statements on two long-lived
//! connections, on tokio. `tokio-postgres` is exactly that: an async client
//! with pipelining and no macros, and with `default-features = false` it
//! adds about a dozen small crates (the wire protocol, `md5`/`sha2` for
//! authentication) to the build. `sqlx` would bring its own runtime
//! abstraction, a pool, a query macro stack and, for compile-time checked
//! queries, a database at build time: far more compile time for nothing the
//! inbox uses. No pool either (`deadpool-postgres`, `bb8`): each inbox holds
//! two connections and reconnects a lost one on next use; a pool would add
//! a dependency and settings but no throughput, since all enqueues of an
//! inbox share one transaction anyway. TLS through rustls, as the URL's
//! `sslmode` and `sslrootcert` ask ([`PostgresTls`](super::PostgresTls)).
//!
//! Times are taken from the database's clock (`now()`), so replicas with
//! skewed clocks agree on leases and retries.

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::{Client, Config};

use super::postgres_tls::PostgresTls;
use super::{
    from_ms, millis, Backend, BoxFuture, Claimed, Counts, Enqueued, InboxError, InboxErrorKind,
    RowState, Settle, StoredDelivery,
};
use kendo_webhooks::Delivery;

/// The database's clock in Unix milliseconds, as SQL.
macro_rules! now_ms {
    () => {
        "(extract(epoch from now()) * 1000)::bigint"
    };
}

/// Schema migrations, applied in order; append, never edit.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "create kendo_inbox",
        include_str!("../migrations/postgres/0001_inbox.sql"),
    ),
    (
        2,
        "kept counts, done rows by age",
        include_str!("../migrations/postgres/0002_scale.sql"),
    ),
];

/// Key of the advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK: i64 = 0x6b65_6e64_6f31;
/// Longest wait for a connection or one statement before the inbox answers
/// 503 (well inside Kendo's 10 s request timeout).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Most deliveries committed in one statement.
const MAX_GROUP: usize = 1024;
/// Requests queued for the writer before callers wait.
const CHANNEL: usize = 4096;

type Reply = oneshot::Sender<Result<Enqueued, InboxError>>;

pub(crate) struct Postgres {
    writer: mpsc::Sender<(Delivery, Reply)>,
    operations: Connection,
}

/// One connection, opened on first use and again after it was lost.
struct Connection {
    config: Config,
    tls: PostgresTls,
    client: Mutex<Option<Client>>,
}

fn reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            // tokio-postgres's own text ("error connecting to server") leaves
            // the cause to its source: say it.
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            format!("{text} (is the server running and reachable? it is retried on the next call)")
        }
    }
}

fn unavailable(what: &str, error: tokio_postgres::Error) -> InboxError {
    InboxError::unavailable(what, reason(&error)).caused_by(error)
}

impl Connection {
    async fn client<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a mut Client, InboxError> {
        if slot.as_ref().is_some_and(Client::is_closed) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(connect(&self.config, &self.tls).await?);
        }
        slot.as_mut().ok_or_else(InboxError::closed)
    }

    /// Runs `operation` on this connection, within [`OPERATION_TIMEOUT`];
    /// drops the connection after a timeout or a connection error.
    async fn run<T>(
        &self,
        what: &'static str,
        operation: impl for<'c> FnOnce(
            &'c mut Client,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    ) -> Result<T, InboxError> {
        let mut slot = self.client.lock().await;
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let client = self.client(&mut slot).await?;
            operation(client).await.map_err(|e| unavailable(what, e))
        });
        match outcome.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if slot.as_ref().is_some_and(Client::is_closed) {
                    *slot = None;
                }
                Err(error)
            }
            Err(_elapsed) => {
                *slot = None;
                Err(InboxError::unavailable(
                    what,
                    format!("no answer from Postgres within {OPERATION_TIMEOUT:?}"),
                ))
            }
        }
    }
}

async fn connect(config: &Config, tls: &PostgresTls) -> Result<Client, InboxError> {
    let what = "could not connect to the Postgres inbox";
    let (client, connection) = tokio::time::timeout(OPERATION_TIMEOUT, config.connect(tls.clone()))
        .await
        .map_err(|_| {
            InboxError::unavailable(what, format!("no answer within {OPERATION_TIMEOUT:?}"))
        })?
        .map_err(|e| unavailable(what, e))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}

impl Postgres {
    pub(crate) async fn connect(url: &str) -> Result<Self, InboxError> {
        let (url, tls) = PostgresTls::from_url(url)?;
        let mut config = Config::from_str(&url).map_err(|e| {
            InboxError::unavailable(
                "the Postgres URL does not parse",
                format!("{e} (expected postgres://user:password@host:port/database or host=... user=... dbname=...)"),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(OPERATION_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("kendo-webhooks inbox");
        }
        let mut client = connect(&config, &tls).await?;
        migrate(&mut client).await?;
        let operations = Connection {
            config: config.clone(),
            tls: tls.clone(),
            client: Mutex::new(Some(client)),
        };
        let (writer, deliveries) = mpsc::channel(CHANNEL);
        let connection = Connection {
            config,
            tls,
            client: Mutex::new(None),
        };
        tokio::spawn(write(connection, deliveries));
        Ok(Self { writer, operations })
    }
}

async fn migrate(client: &mut Client) -> Result<(), InboxError> {
    let fail = |e: tokio_postgres::Error| {
        InboxError::new(
            InboxErrorKind::Migration,
            "could not migrate the Postgres inbox",
            reason(&e),
        )
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS kendo_inbox_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(fail)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kendo_inbox_migrations",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(InboxError::new(
            InboxErrorKind::Migration,
            format!("the Postgres inbox is at schema version {current}"),
            format!("this version of kendo-webhooks knows versions up to {newest}: upgrade it"),
        ));
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO kendo_inbox_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}

/// The writer task: commits every delivery waiting at the time in one
/// statement (one transaction, one WAL flush), then answers each.
async fn write(connection: Connection, mut deliveries: mpsc::Receiver<(Delivery, Reply)>) {
    let mut group = Vec::with_capacity(64);
    while deliveries.recv_many(&mut group, MAX_GROUP).await > 0 {
        let batch: Vec<Delivery> = group.iter().map(|(d, _)| d.clone()).collect();
        match insert(&connection, batch).await {
            Ok(mut inserted) => {
                for (delivery, reply) in group.drain(..) {
                    // The first of several with one event id is the stored one.
                    let outcome = if inserted.remove(stored_key(delivery.event_id()).as_ref()) {
                        Enqueued::Stored
                    } else {
                        Enqueued::Duplicate
                    };
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if group.len() > 1 => {
                // One row the database refuses must not fail its group:
                // each is tried on its own (a lost connection fails them
                // all quickly anyway).
                let mut unreachable: Option<InboxError> = (!is_refusal(&error)).then_some(error);
                for (delivery, reply) in group.drain(..) {
                    if let Some(error) = &unreachable {
                        let _ = reply.send(Err(error.clone()));
                        continue;
                    }
                    let key = stored_key(delivery.event_id()).into_owned();
                    let outcome = insert(&connection, vec![delivery]).await.map(|inserted| {
                        if inserted.contains(&key) {
                            Enqueued::Stored
                        } else {
                            Enqueued::Duplicate
                        }
                    });
                    if let Err(error) = &outcome {
                        if !is_refusal(error) {
                            unreachable = Some(error.clone());
                        }
                    }
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Longest event id stored as is: well under the b-tree's ~2,700-byte
/// limit on a key.
const MAX_KEY_BYTES: usize = 512;

/// The key an event id is stored under. Postgres `text` cannot hold a NUL,
/// and a b-tree key cannot exceed about 2,700 bytes, while a signed event
/// id may do either: such an id is stored as `sha256:` and the hex SHA-256
/// of its bytes (the row's body still holds it as sent, and the handler
/// sees it so). Every other id is stored as is.
pub(crate) fn stored_key(event_id: &str) -> std::borrow::Cow<'_, str> {
    if event_id.len() <= MAX_KEY_BYTES && !event_id.contains('\0') {
        return std::borrow::Cow::Borrowed(event_id);
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(event_id.as_bytes());
    std::borrow::Cow::Owned(format!("sha256:{}", hex::encode(digest)))
}

/// Postgres text cannot hold a NUL: U+FFFD stands for it.
fn storable_text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Whether the database answered with an error of its own (a SQLSTATE:
/// this statement was refused) rather than being unreachable; only then is
/// a group retried row by row.
fn is_refusal(error: &InboxError) -> bool {
    error.to_string().contains("(SQLSTATE ")
}

/// Inserts `deliveries` in one statement; returns the stored keys of the
/// rows inserted (not duplicates).
async fn insert(
    connection: &Connection,
    deliveries: Vec<Delivery>,
) -> Result<std::collections::HashSet<String>, InboxError> {
    connection
        .run("could not commit deliveries to the Postgres inbox", |client| {
            Box::pin(async move {
                let event_ids: Vec<String> = deliveries
                    .iter()
                    .map(|d| stored_key(d.event_id()).into_owned())
                    .collect();
                let delivery_ids: Vec<String> = deliveries
                    .iter()
                    .map(|d| storable_text(d.delivery_id()).into_owned())
                    .collect();
                let events: Vec<String> = deliveries
                    .iter()
                    .map(|d| storable_text(d.event_name()).into_owned())
                    .collect();
                let bodies: Vec<&[u8]> = deliveries.iter().map(|d| d.body().as_ref()).collect();
                let rows = client
                    .query(
                        concat!(
                            "INSERT INTO kendo_inbox (event_id, delivery_id, event, body, received_at, next_at)
                             SELECT e, d, n, b, ", now_ms!(), ", ", now_ms!(), "
                             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(e, d, n, b)
                             ON CONFLICT (event_id) DO NOTHING
                             RETURNING event_id"
                        ),
                        &[&event_ids, &delivery_ids, &events, &bodies],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| row.get::<_, String>(0))
                    .collect::<std::collections::HashSet<String>>())
            })
        })
        .await
}

fn stored(row: &tokio_postgres::Row) -> StoredDelivery {
    let state: String = row.get(4);
    StoredDelivery {
        event_id: row.get(0),
        delivery_id: row.get(1),
        event_name: row.get(2),
        body: Bytes::from(row.get::<_, Vec<u8>>(3)),
        state: RowState::parse(&state).unwrap_or(RowState::Dead),
        attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        last_error: row.get(6),
        received_at: from_ms(row.get(7)),
        next_at: from_ms(row.get(8)),
        lease_owner: row.get(9),
    }
}

fn clamp_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Backend for Postgres {
    fn enqueue(&self, delivery: Delivery) -> BoxFuture<'_, Result<Enqueued, InboxError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.writer
                .send((delivery, reply))
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
        let limit = clamp_i64(limit);
        let lease = millis(lease);
        Box::pin(self.operations.run(
            "could not claim rows of the Postgres inbox",
            move |client| {
                Box::pin(async move {
                    let tx = client.transaction().await?;
                    let rows = tx
                        .query(
                            concat!(
                                "WITH due AS (
                                SELECT event_id FROM kendo_inbox
                                WHERE state IN ('pending', 'leased', 'failed') AND next_at <= ",
                                now_ms!(),
                                "
                                ORDER BY next_at
                                LIMIT $2
                                FOR UPDATE SKIP LOCKED)
                             UPDATE kendo_inbox AS i SET
                                state = 'leased', lease_owner = $1,
                                next_at = ",
                                now_ms!(),
                                " + $3, attempts = i.attempts + 1
                             FROM due WHERE i.event_id = due.event_id
                             RETURNING i.event_id, i.delivery_id, i.event, i.body, i.attempts"
                            ),
                            &[&owner, &limit, &lease],
                        )
                        .await?;
                    let mut claimed: Vec<Claimed> = rows
                        .iter()
                        .map(|row| Claimed {
                            event_id: row.get(0),
                            delivery_id: row.get(1),
                            event_name: row.get(2),
                            body: Bytes::from(row.get::<_, Vec<u8>>(3)),
                            attempts: u32::try_from(row.get::<_, i32>(4)).unwrap_or(u32::MAX),
                        })
                        .collect();
                    // Only a row whose lease ended unsettled can come back out
                    // of attempts: it dies here, in the same transaction,
                    // instead of a scan of every due row before each claim.
                    for row in claimed.iter().filter(|row| row.attempts > max_attempts) {
                        tx.execute(
                            concat!(
                                "UPDATE kendo_inbox SET state = 'dead', next_at = ",
                                now_ms!(),
                                ",
                                attempts = attempts - 1, last_error = $1
                             WHERE event_id = $2"
                            ),
                            &[
                                &super::out_of_attempts(row.attempts, max_attempts),
                                &row.event_id,
                            ],
                        )
                        .await?;
                    }
                    claimed.retain(|row| row.attempts <= max_attempts);
                    tx.commit().await?;
                    Ok(claimed)
                })
            },
        ))
    }

    fn settle(
        &self,
        owner: String,
        rows: Vec<(String, Settle)>,
    ) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(self.operations.run(
            "could not settle rows of the Postgres inbox",
            move |client| {
                Box::pin(async move {
                    let tx = client.transaction().await?;
                    let done: Vec<&str> = rows
                        .iter()
                        .filter(|(_, how)| matches!(how, Settle::Done))
                        .map(|(id, _)| id.as_str())
                        .collect();
                    if !done.is_empty() {
                        tx.execute(
                            concat!(
                                "UPDATE kendo_inbox SET state = 'done', next_at = ",
                                now_ms!(),
                                "
                             WHERE event_id = ANY($1) AND state = 'leased' AND lease_owner = $2"
                            ),
                            &[&done, &owner],
                        )
                        .await?;
                    }
                    for (event_id, how) in &rows {
                        let (state, delay, error) = match how {
                            Settle::Done => continue,
                            Settle::Retry { delay, error } => ("failed", millis(*delay), error),
                            Settle::Dead { error } => ("dead", 0, error),
                        };
                        tx.execute(
                            concat!(
                                "UPDATE kendo_inbox SET state = $1, next_at = ",
                                now_ms!(),
                                " + $2, last_error = $3
                             WHERE event_id = $4 AND state = 'leased' AND lease_owner = $5"
                            ),
                            &[&state, &delay, error, event_id, &owner],
                        )
                        .await?;
                    }
                    tx.commit().await
                })
            },
        ))
    }

    fn extend(
        &self,
        owner: String,
        event_ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), InboxError>> {
        let lease = millis(lease);
        Box::pin(self.operations.run(
            "could not renew leases in the Postgres inbox",
            move |client| {
                Box::pin(async move {
                    client
                        .execute(
                            concat!(
                                "UPDATE kendo_inbox SET next_at = ",
                                now_ms!(),
                                " + $1
                             WHERE event_id = ANY($2) AND state = 'leased' AND lease_owner = $3"
                            ),
                            &[&lease, &event_ids, &owner],
                        )
                        .await
                        .map(drop)
                })
            },
        ))
    }

    fn list(
        &self,
        state: RowState,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredDelivery>, InboxError>> {
        let limit = clamp_i64(limit);
        Box::pin(
            self.operations
                .run("could not list rows of the Postgres inbox", move |client| {
                    Box::pin(async move {
                        let sql = format!(
                            "SELECT event_id, delivery_id, event, body, state, attempts, last_error,
                                    received_at, next_at, lease_owner
                             FROM kendo_inbox WHERE state = $1 AND {} LIMIT $2",
                            super::list_order(state)
                        );
                        let rows = client.query(&sql, &[&state.as_str(), &limit]).await?;
                        Ok(rows.iter().map(stored).collect())
                    })
                }),
        )
    }

    fn get(&self, event_id: String) -> BoxFuture<'_, Result<Option<StoredDelivery>, InboxError>> {
        let event_id = stored_key(&event_id).into_owned();
        Box::pin(self.operations.run(
            "could not read a row of the Postgres inbox",
            move |client| {
                Box::pin(async move {
                    let rows = client
                        .query(
                            "SELECT event_id, delivery_id, event, body, state, attempts,
                                        last_error, received_at, next_at, lease_owner
                                 FROM kendo_inbox WHERE event_id = $1",
                            &[&event_id],
                        )
                        .await?;
                    Ok(rows.first().map(stored))
                })
            },
        ))
    }

    fn requeue(
        &self,
        event_id: Option<String>,
        failed_too: bool,
    ) -> BoxFuture<'_, Result<u64, InboxError>> {
        let event_id = event_id.map(|id| stored_key(&id).into_owned());
        Box::pin(self.operations.run("could not re-queue rows of the Postgres inbox", move |client| {
            Box::pin(async move {
                client
                    .execute(
                        concat!(
                            "UPDATE kendo_inbox SET state = 'pending', attempts = 0, lease_owner = NULL,
                                next_at = ", now_ms!(), "
                             WHERE state IN ('failed', 'dead') AND (state = 'dead' OR $2)
                               AND ($1::text IS NULL OR event_id = $1)"
                        ),
                        &[&event_id, &failed_too],
                    )
                    .await
            })
        }))
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, InboxError>> {
        Box::pin(
            self.operations
                .run("could not count rows of the Postgres inbox", |client| {
                    Box::pin(async move {
                        let rows = client
                            .query(
                                // Kept by triggers: at most 80 rows, never a
                                // scan of the inbox.
                                "SELECT state, sum(n)::bigint FROM kendo_inbox_counts GROUP BY state",
                                &[],
                            )
                            .await?;
                        let mut counts = Counts::default();
                        for row in rows {
                            counts.set(row.get(0), row.get(1));
                        }
                        Ok(counts)
                    })
                }),
        )
    }

    fn purge_done(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<u64, InboxError>> {
        let older_than = millis(older_than);
        let limit = clamp_i64(limit);
        Box::pin(self.operations.run(
            "could not purge done rows of the Postgres inbox",
            move |client| {
                Box::pin(async move {
                    client
                        .execute(
                            concat!(
                                "DELETE FROM kendo_inbox WHERE event_id IN (
                                    SELECT event_id FROM kendo_inbox
                                    WHERE state = 'done' AND next_at < ",
                                now_ms!(),
                                " - $1
                                    ORDER BY next_at LIMIT $2
                                    FOR UPDATE SKIP LOCKED)"
                            ),
                            &[&older_than, &limit],
                        )
                        .await
                })
            },
        ))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(
            self.operations
                .run("the Postgres inbox cannot be written", |client| {
                    Box::pin(async move {
                        // A real write, committed (and flushed) at once.
                        client
                            .execute(
                                "UPDATE kendo_inbox_counts SET n = n
                                 WHERE state = 'dead' AND shard = 0",
                                &[],
                            )
                            .await
                            .map(drop)
                    })
                }),
        )
    }
}
