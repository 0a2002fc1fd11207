//! The durable inbox for [`kendo_webhooks`]: commit each verified delivery,
//! answer 2xx, and hand it to your handler in the background.
//!
//! | feature | backend |
//! |---|---|
//! | `sqlite` (default) | [`Inbox::open_sqlite`]: one file, SQLite bundled (no system library) |
//! | `postgres` | [`Inbox::connect_postgres`]: one database shared by any number of replicas |
//! | `tracing` | a line for each worker failure and dead row |
//!
//! Kendo's own guidance is "return 200 as soon as the event is enqueued
//! safely; process in the background; handle duplicates using `id`". An
//! [`Inbox`] is that guidance as a component:
//!
//! - **As the inner service** behind [`KendoWebhookLayer`](kendo_webhooks::KendoWebhookLayer),
//!   it commits the verified [`Delivery`] (ids, event name, raw body) in one
//!   database row, unique on the signed event id, and answers `200` only
//!   once the commit is durable; `200` with `x-kendo-inbox: duplicate` when
//!   the event is already stored; `503` with `Retry-After` when the database
//!   is unavailable, so Kendo retries.
//! - **A [`Worker`]** hands each stored delivery to your async handler, at
//!   least once: your handler should be idempotent on
//!   [`Delivery::event_id`]. A failure is retried with exponential backoff up
//!   to [`Worker::max_attempts`] hand-offs; then the row is `dead`, listed by
//!   [`Inbox::list`] and re-queued by [`Inbox::requeue`].
//!
//! # Example (SQLite)
//!
//! ```
//! use axum::{routing::post_service, Router};
//! use kendo_webhooks_inbox::{Inbox, RowState};
//! use kendo_webhooks::{Delivery, KendoWebhookLayer, TestDelivery};
//!
//! async fn project(delivery: Delivery) -> Result<(), String> {
//!     // Write to your CRM here, idempotent on `delivery.event_id()`.
//!     println!("{} {}", delivery.event_name(), delivery.event_id());
//!     Ok(())
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let inbox = Inbox::open_sqlite(dir.path().join("inbox.db")).await?;
//!
//! // Verify, de-duplicate, commit, answer 2xx.
//! let app: Router = Router::new().route(
//!     "/webhooks/kendo",
//!     post_service(inbox.clone()).layer(KendoWebhookLayer::new("whsec_test")?),
//! );
//!
//! // Process in the background; stop gracefully on shutdown.
//! let worker = inbox.worker(project).max_attempts(5).spawn();
//! # let _ = app;
//! # let body = kendo_webhooks::TestDelivery::example("call.uploaded").event_id("evt_1").created_at("2026-03-05T12:00:00Z").body();
//! # let delivery = Delivery::parse(body, "dlv_1", "call.uploaded")?;
//! # inbox.enqueue(&delivery).await?;
//! # for _ in 0..500 {
//! #     if inbox.counts().await?.done == 1 { break }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! let report = worker.shutdown().await;
//! # assert_eq!(report.succeeded, 1);
//!
//! // Deliveries whose attempts are used up wait in the dead state.
//! for row in inbox.list(RowState::Dead, 100).await? {
//!     println!("{} failed {} times: {:?}", row.event_id, row.attempts, row.last_error);
//!     inbox.requeue(&row.event_id).await?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Rows and their states
//!
//! One table, `kendo_inbox`, keyed by the event id. A row is `pending` when
//! committed; a worker *claims* due rows in batches and makes them
//! `leased` (a lease owner and an end time, counting one attempt); the
//! handler's result settles each row as `done`, or `failed` (attempts, the
//! time of the next try, the error), or `dead` when its attempts are used
//! up. A lease that ends before its row is settled (the worker crashed or
//! hung) makes the row due again; a worker keeps the leases of the rows it
//! is still handling alive. `done` rows stay, so a retry of an old event is
//! still a duplicate; [`Inbox::purge_done`] or the worker option
//! [`Worker::purge_done_after`] removes old ones, a few hundred at a time.
//!
//! Rows per state are kept by triggers, so [`Inbox::counts`] reads a few
//! rows instead of the table, and every query of the worker and of
//! [`Inbox::list`] reads an index: their cost does not grow with the table.
//! A handler that can write many deliveries in one transaction should be a
//! [`BatchHandler`] ([`Inbox::batch_worker`]): one commit per batch.
//!
//! Migrations are embedded and versioned (`kendo_inbox_migrations`); they
//! run when the inbox opens.
//!
//! # Group commit
//!
//! Concurrent enqueues share one transaction, and so one fsync: one writer
//! takes every delivery waiting at the time and commits them together,
//! then answers each. SQLite runs in WAL mode with `synchronous=FULL`, on a
//! thread of its own; Postgres with its default `synchronous_commit=on`.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend feature the crate builds but has no way to open an
// inbox: what only the backends use is then unused.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Notify;
use tower_service::Service;

use kendo_webhooks::Delivery;
use kendo_webhooks::Rejection;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres_tls;
#[cfg(feature = "postgres")]
pub use postgres_tls::PostgresTls;
mod error;
mod rows;
mod service;
#[cfg(feature = "sqlite")]
mod sqlite;
mod worker;

pub use self::error::{InboxError, InboxErrorKind};
pub use self::rows::{Counts, Enqueued, RowState, StoredDelivery};
pub use self::service::InboxFuture;
pub use self::worker::{BatchHandler, Batched, Handler, Worker, WorkerHandle, WorkerReport};

/// Response header naming what the inbox did: `stored`, `duplicate` or
/// `unavailable`.
pub const INBOX_HEADER: &str = "x-kendo-inbox";

/// Most done rows deleted in one transaction by [`Inbox::purge_done`].
pub const PURGE_BATCH: usize = 500;

/// Seconds in the `Retry-After` header of a `503` (Kendo retries on its own
/// schedule; other senders may honour it).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// A durable inbox of verified deliveries, on SQLite or Postgres.
///
/// Cheap to clone: clones share one database and one group-commit writer.
/// As a tower service it takes the [`Delivery`] that
/// [`KendoWebhookLayer`](kendo_webhooks::KendoWebhookLayer) put in the request
/// extensions (see the [module docs](self)).
#[derive(Clone)]
pub struct Inbox {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Box<dyn Backend>,
    /// Woken when a new row is committed, so idle workers start at once.
    wake: Notify,
    name: &'static str,
    /// The outcome of the newest commit or probe, for [`Inbox::health`].
    health: HealthState,
}

/// What the newest commit or probe said, kept in memory.
#[derive(Default)]
struct HealthState {
    /// Unix ms of the newest successful commit or probe (0: none yet).
    last_ok_ms: AtomicI64,
    /// Unix ms of the newest failed one (0: none yet).
    last_failure_ms: AtomicI64,
    /// Why it failed.
    last_error: Mutex<Option<InboxError>>,
    /// Rows the worker settled as done, and when (for the recent rate).
    done: AtomicU64,
}

impl HealthState {
    fn record<T>(&self, result: &Result<T, InboxError>) {
        let now = now_ms();
        match result {
            Ok(_) => {
                if self.last_ok_ms.load(Ordering::Relaxed) != now {
                    self.last_ok_ms.store(now, Ordering::Relaxed);
                }
            }
            Err(error) if error.is_unavailable() || error.kind() == InboxErrorKind::Closed => {
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
                self.last_failure_ms.store(now, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// Whether an inbox can durably accept deliveries now, from
/// [`Inbox::health`]: read from memory, without touching the database.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Health {
    /// `false` when the newest commit or [`probe`](Inbox::probe) failed.
    pub healthy: bool,
    /// When a commit or probe last succeeded.
    pub last_ok: Option<SystemTime>,
    /// When one last failed, and why.
    pub last_failure: Option<(SystemTime, InboxError)>,
    /// Rows settled as done by this process's workers since the inbox
    /// opened (a counter: take two readings for a rate).
    pub done_total: u64,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("backend", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// A claimed row, handed to the worker.
pub(crate) struct Claimed {
    pub(crate) event_id: String,
    pub(crate) delivery_id: String,
    pub(crate) event_name: String,
    pub(crate) body: Bytes,
    pub(crate) attempts: u32,
}

/// How the worker settles one leased row.
#[derive(Clone)]
pub(crate) enum Settle {
    /// Handled: `done`.
    Done,
    /// Failed: `failed`, due again after `delay`.
    Retry { delay: Duration, error: String },
    /// Failed for the last time: `dead`.
    Dead { error: String },
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A database behind the inbox. Crate-private: the backends are SQLite and
/// Postgres, chosen by the constructor.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Commits a delivery (grouped with concurrent ones).
    fn enqueue(&self, delivery: Delivery) -> BoxFuture<'_, Result<Enqueued, InboxError>>;
    /// Marks due rows out of attempts `dead`, then leases up to `limit` due
    /// rows to `owner` for `lease`, counting one attempt each.
    fn claim(
        &self,
        owner: String,
        limit: usize,
        lease: Duration,
        max_attempts: u32,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, InboxError>>;
    /// Settles rows still leased to `owner` (others are left alone).
    fn settle(
        &self,
        owner: String,
        rows: Vec<(String, Settle)>,
    ) -> BoxFuture<'_, Result<(), InboxError>>;
    /// Extends the leases of rows still leased to `owner`.
    fn extend(
        &self,
        owner: String,
        event_ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), InboxError>>;
    /// Rows in `state`, oldest first (see [`list_order`]).
    fn list(
        &self,
        state: RowState,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredDelivery>, InboxError>>;
    /// The row of one event, whatever its state.
    fn get(&self, event_id: String) -> BoxFuture<'_, Result<Option<StoredDelivery>, InboxError>>;
    /// Makes dead rows pending again with no attempts: one (`Some`) or all,
    /// and with `failed_too` the failed rows waiting for a retry as well.
    fn requeue(
        &self,
        event_id: Option<String>,
        failed_too: bool,
    ) -> BoxFuture<'_, Result<u64, InboxError>>;
    /// Rows per state.
    fn counts(&self) -> BoxFuture<'_, Result<Counts, InboxError>>;
    /// Deletes at most `limit` done rows older than `older_than`, oldest
    /// first.
    fn purge_done(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<u64, InboxError>>;
    /// Proves the database can be written now (a small write, committed).
    fn probe(&self) -> BoxFuture<'_, Result<(), InboxError>>;
}

impl Inbox {
    fn from_backend(backend: Box<dyn Backend>, name: &'static str) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                wake: Notify::new(),
                name,
                health: HealthState::default(),
            }),
        }
    }

    /// Opens (creating if needed) and migrates a SQLite inbox at `path`, in
    /// WAL mode with `synchronous=FULL`.
    ///
    /// The database runs on a thread of its own that ends when the last
    /// clone of the inbox (and its workers) is dropped. Needs a tokio
    /// runtime only for the async calls, not for the thread.
    ///
    /// # Errors
    ///
    /// [`InboxErrorKind::Unavailable`] when the file cannot be opened or
    /// written (check the path, its directory and permissions);
    /// [`InboxErrorKind::Migration`] when the schema cannot be migrated.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub async fn open_sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, InboxError> {
        let backend = sqlite::Sqlite::open(path.as_ref().to_path_buf()).await?;
        Ok(Self::from_backend(Box::new(backend), "sqlite"))
    }

    /// Connects to Postgres with a libpq-style URL or key-value string
    /// (`postgres://user:password@host:5432/db` or
    /// `host=... user=... dbname=...`), with TLS as its `sslmode` and
    /// `sslrootcert` say (see [`PostgresTls`]), and migrates the schema. Any number of inboxes (replicas) can share one database.
    ///
    /// Call it inside a tokio runtime: the connections run as tasks on it.
    ///
    /// # Errors
    ///
    /// [`InboxErrorKind::Unavailable`] when the URL does not parse or the
    /// server cannot be reached; [`InboxErrorKind::Migration`] when the
    /// schema cannot be migrated.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn connect_postgres(url: &str) -> Result<Self, InboxError> {
        let backend = postgres::Postgres::connect(url).await?;
        Ok(Self::from_backend(Box::new(backend), "postgres"))
    }

    /// Commits a verified delivery, unless its event id is already stored.
    /// Returns once the commit is durable.
    ///
    /// # Errors
    ///
    /// [`InboxErrorKind::Unavailable`] when the database cannot commit now
    /// (answer 503 so the sender retries); [`InboxErrorKind::Closed`] when
    /// the writer has stopped.
    pub async fn enqueue(&self, delivery: &Delivery) -> Result<Enqueued, InboxError> {
        let result = self.shared.backend.enqueue(delivery.clone()).await;
        self.shared.health.record(&result);
        let enqueued = result?;
        if enqueued == Enqueued::Stored {
            self.shared.wake.notify_one();
        }
        Ok(enqueued)
    }

    /// A [`Worker`] that hands stored deliveries to `handler`; configure it,
    /// then [`spawn`](Worker::spawn) or [`run`](Worker::run) it.
    pub fn worker<H: Handler>(&self, handler: H) -> Worker<H> {
        Worker::new(self.clone(), handler)
    }

    /// A [`Worker`] that hands each claimed batch to `handler` at once (one
    /// call per batch of up to [`Worker::batch_size`] deliveries), for
    /// handlers that write a whole batch in one transaction: one commit
    /// per batch instead of one per delivery.
    pub fn batch_worker<B: BatchHandler>(&self, handler: B) -> Worker<Batched<B>> {
        Worker::new_batched(self.clone(), handler)
    }

    /// Up to `limit` rows (at most 1,000) in `state`, oldest first: for
    /// example the dead ones, to inspect and [`requeue`](Self::requeue).
    /// Pending and leased rows come by due time (a pending row is due when
    /// it arrives), failed and dead ones by arrival, done ones by when they
    /// were done; each list reads an index, never the whole table.
    ///
    /// # Errors
    ///
    /// When the database cannot be read.
    pub async fn list(
        &self,
        state: RowState,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>, InboxError> {
        self.shared.backend.list(state, limit.min(1_000)).await
    }

    /// The row of one event, whatever its state (`None`: no row has this
    /// event id, or it was purged); an operator's detail view.
    ///
    /// # Errors
    ///
    /// When the database cannot be read.
    pub async fn get(&self, event_id: &str) -> Result<Option<StoredDelivery>, InboxError> {
        self.shared.backend.get(event_id.to_owned()).await
    }

    /// Makes a dead row, or a failed row waiting for its next retry,
    /// pending and due now, with its attempts reset; `false` when no dead
    /// or failed row has this event id.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    pub async fn requeue(&self, event_id: &str) -> Result<bool, InboxError> {
        let requeued = self
            .shared
            .backend
            .requeue(Some(event_id.to_owned()), true)
            .await?;
        if requeued > 0 {
            self.shared.wake.notify_one();
        }
        Ok(requeued > 0)
    }

    /// Makes every dead row pending again; returns how many.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    pub async fn requeue_dead(&self) -> Result<u64, InboxError> {
        let requeued = self.shared.backend.requeue(None, false).await?;
        if requeued > 0 {
            self.shared.wake.notify_one();
        }
        Ok(requeued)
    }

    /// Makes every dead row and every failed row (waiting for its next
    /// retry) pending and due now, attempts reset; returns how many. After
    /// an outage is fixed, this hands everything again at once instead of
    /// waiting for each row's backoff.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    pub async fn requeue_all(&self) -> Result<u64, InboxError> {
        let requeued = self.shared.backend.requeue(None, true).await?;
        if requeued > 0 {
            self.shared.wake.notify_one();
        }
        Ok(requeued)
    }

    /// How many rows are in each state.
    ///
    /// # Errors
    ///
    /// When the database cannot be read.
    pub async fn counts(&self) -> Result<Counts, InboxError> {
        self.shared.backend.counts().await
    }

    /// Deletes `done` rows finished more than `older_than` ago; returns how
    /// many. Keep them longer than any sender retries (Kendo: seconds), or
    /// a late retry of a purged event is stored and handled again. Works in
    /// batches of [`PURGE_BATCH`] rows, one short transaction each, so it
    /// never holds the writer for long; [`Worker::purge_done_after`] does
    /// the same in the background.
    ///
    /// # Errors
    ///
    /// When the database cannot be written.
    pub async fn purge_done(&self, older_than: Duration) -> Result<u64, InboxError> {
        let mut total = 0;
        loop {
            let deleted = self
                .shared
                .backend
                .purge_done(older_than, PURGE_BATCH)
                .await?;
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Whether the inbox can durably accept deliveries, from memory (no
    /// database access): unhealthy when the newest commit or
    /// [`probe`](Self::probe) failed. Cheap enough for every health check.
    #[must_use]
    pub fn health(&self) -> Health {
        let state = &self.shared.health;
        let ok = state.last_ok_ms.load(Ordering::Relaxed);
        let failed = state.last_failure_ms.load(Ordering::Relaxed);
        let error = state
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Health {
            healthy: failed == 0 || ok > failed,
            last_ok: (ok > 0).then(|| from_ms(ok)),
            last_failure: error.filter(|_| failed > 0).map(|e| (from_ms(failed), e)),
            done_total: state.done.load(Ordering::Relaxed),
        }
    }

    /// Writes to the database now (a small transaction, with its fsync) and
    /// records the outcome for [`health`](Self::health); on SQLite it also
    /// checks that the file on disk is still the one opened. Call it every
    /// few seconds from a background task, so a node that cannot write is
    /// known before a delivery fails.
    ///
    /// # Errors
    ///
    /// Why the database cannot be written.
    pub async fn probe(&self) -> Result<(), InboxError> {
        let result = self.shared.backend.probe().await;
        self.shared.health.record(&result);
        result
    }

    pub(crate) fn count_done(&self, rows: u64) {
        self.shared.health.done.fetch_add(rows, Ordering::Relaxed);
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.shared.backend
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.shared.wake
    }
}

/// The error of a row claimed again after its lease ended unsettled, with
/// no attempts left (`attempts` counts the claim that found it).
pub(crate) fn out_of_attempts(attempts: u32, max_attempts: u32) -> String {
    format!(
        "attempt {} of {max_attempts} was never settled (its worker stopped or hung until the \
         lease ended); no attempts left",
        attempts.saturating_sub(1)
    )
}

/// The `WHERE` and `ORDER BY` of a list of rows in `state`, each on one of
/// the partial indexes (the redundant `IN` term lets SQLite see that the
/// index covers the query): waiting rows by due time (for a pending row,
/// when it arrived), failed and dead rows by arrival, done rows by when
/// they were done.
pub(crate) fn list_order(state: RowState) -> &'static str {
    match state {
        RowState::Pending | RowState::Leased => {
            "state IN ('pending', 'leased', 'failed') ORDER BY next_at"
        }
        RowState::Failed | RowState::Dead => {
            "state IN ('failed', 'dead') ORDER BY state, received_at"
        }
        RowState::Done => "state = 'done' ORDER BY next_at",
    }
}

/// The SQLite inbox's hot and operator queries (name, SQL), for tests
/// that check their query plans. Not a stable API.
#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[must_use]
pub fn sqlite_query_plans_for_tests() -> Vec<(&'static str, String)> {
    sqlite::query_plans()
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A point in time from Unix milliseconds (clamped at the epoch).
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration in whole milliseconds, as stored (saturating).
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn row_states_read_back_from_their_names() {
        for state in [
            RowState::Pending,
            RowState::Leased,
            RowState::Done,
            RowState::Failed,
            RowState::Dead,
        ] {
            assert_eq!(RowState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RowState::parse("lost"), None);
    }

    #[tokio::test]
    async fn a_request_without_the_layer_is_answered_500_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open_sqlite(dir.path().join("inbox.db"))
            .await
            .unwrap();
        let response = inbox
            .call(Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[INBOX_HEADER], "missing");
        assert_eq!(inbox.counts().await.unwrap(), Counts::default());
    }

    #[tokio::test]
    async fn a_stored_delivery_is_answered_200_then_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open_sqlite(dir.path().join("inbox.db"))
            .await
            .unwrap();
        let body = kendo_webhooks::TestDelivery::example("call.uploaded")
            .event_id("evt_1")
            .created_at("2026-03-05T12:00:00Z")
            .body();
        let delivery = Delivery::parse(body, "dlv_1", "call.uploaded").unwrap();
        for expected in ["stored", "duplicate"] {
            let mut request = Request::new(Full::new(Bytes::new()));
            request.extensions_mut().insert(delivery.clone());
            let response = inbox.call(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[INBOX_HEADER], expected);
        }
    }
}
