//! The worker: claims due rows in batches, hands each to the user's handler,
//! settles the batch.
//!
//! One file for one loop (about 770 lines): the claim, the hand-off with its
//! lease renewal and hanging-handler cut-off, the retry schedule and the
//! settle share the batch's state; split, each part would need all of it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{Claimed, Inbox, Settle};
use kendo_webhooks::Delivery;

/// Your code that processes one stored delivery.
///
/// Implemented for every `Fn(Delivery) -> impl Future<Output = Result<(), E>>`
/// with a displayable `E`, so an `async fn` works as a handler. It runs at
/// least once per delivery (more after a failure or a crash), so make it
/// idempotent on [`Delivery::event_id`].
pub trait Handler: Send + Sync + 'static {
    /// Why handling failed; its text is stored as the row's `last_error`.
    type Error: fmt::Display + Send + 'static;

    /// Processes one delivery. `Ok` marks its row done; `Err` (or a panic)
    /// schedules another attempt, or makes the row dead after the last one.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: fmt::Display + Send + 'static,
{
    type Error = E;

    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), E>> + Send {
        self(delivery)
    }
}

/// Your code that processes a whole claimed batch of stored deliveries at
/// once, for example in one database transaction (built into a worker by
/// [`Inbox::batch_worker`]).
///
/// Implemented for every `Fn(Vec<Delivery>) -> impl Future<Output =
/// Vec<Result<(), E>>>`. Return one result per delivery, in the order
/// given; a missing result counts as a failure. Each delivery runs at least
/// once, so stay idempotent on [`Delivery::event_id`]. When a batch fails
/// as a whole, try its deliveries one by one, so one bad delivery fails
/// alone.
pub trait BatchHandler: Send + Sync + 'static {
    /// Why handling failed; its text is stored as the row's `last_error`.
    type Error: fmt::Display + Send + 'static;

    /// Processes `deliveries`; one result each, in order.
    fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
    ) -> impl Future<Output = Vec<Result<(), Self::Error>>> + Send;
}

impl<F, Fut, E> BatchHandler for F
where
    F: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Result<(), E>>> + Send,
    E: fmt::Display + Send + 'static,
{
    type Error = E;

    fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
    ) -> impl Future<Output = Vec<Result<(), E>>> + Send {
        self(deliveries)
    }
}

/// Results of one spawned task: (row index, result) pairs.
type TaskResults = Vec<(usize, Result<(), String>)>;

/// Starts the handler on claimed rows: one task per row for a [`Handler`],
/// one task per batch for a [`BatchHandler`].
type Dispatch = dyn Fn(Vec<(usize, Delivery)>, Duration, &mut JoinSet<TaskResults>) + Send + Sync;

fn per_delivery<H: Handler>(handler: H) -> Arc<Dispatch> {
    let handler = Arc::new(handler);
    Arc::new(move |rows, timeout, tasks: &mut JoinSet<TaskResults>| {
        for (index, delivery) in rows {
            let handler = Arc::clone(&handler);
            tasks.spawn(async move {
                let result = match tokio::time::timeout(timeout, handler.handle(delivery)).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("the handler did not finish within {timeout:?}")),
                };
                vec![(index, result)]
            });
        }
    })
}

fn batched<B: BatchHandler>(handler: B) -> Arc<Dispatch> {
    let handler = Arc::new(handler);
    Arc::new(move |rows, timeout, tasks: &mut JoinSet<TaskResults>| {
        if rows.is_empty() {
            return;
        }
        let handler = Arc::clone(&handler);
        tasks.spawn(async move {
            let (indexes, deliveries): (Vec<usize>, Vec<Delivery>) = rows.into_iter().unzip();
            let results =
                match tokio::time::timeout(timeout, handler.handle_batch(deliveries)).await {
                    Ok(results) => results
                        .into_iter()
                        .map(|r| r.map_err(|e| e.to_string()))
                        .collect(),
                    Err(_) => Vec::new(),
                };
            let mut results = results.into_iter();
            indexes
                .into_iter()
                .map(|index| {
                    let result = results.next().unwrap_or_else(|| {
                        Err(format!(
                            "the batch handler gave no result for it within {timeout:?}"
                        ))
                    });
                    (index, result)
                })
                .collect()
        });
    })
}

/// Hands stored deliveries to a [`Handler`]: built by [`Inbox::worker`],
/// configured with its methods, then [`spawn`](Self::spawn)ed or
/// [`run`](Self::run).
///
/// Each round it claims up to [`batch_size`](Self::batch_size) due rows in
/// one transaction (a lease of [`lease`](Self::lease) on each, one attempt
/// counted), runs their handlers concurrently (or hands the whole batch to
/// one [`BatchHandler`] call), renews the leases while they run, and settles
/// the batch in one transaction. Rows still running a second later finish
/// on a task of their own while the worker goes on. Any number of
/// workers, in one process or many, can share an inbox: a row is leased to
/// one of them at a time.
pub struct Worker<H> {
    inbox: Inbox,
    dispatch: Arc<Dispatch>,
    handler: std::marker::PhantomData<fn() -> H>,
    retention: Option<Duration>,
    batch_size: usize,
    max_attempts: u32,
    lease: Duration,
    first_backoff: Duration,
    max_backoff: Duration,
    poll_interval: Duration,
    shutdown_grace: Duration,
    handler_timeout: Duration,
    owner: String,
}

impl<H> fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .field("batch_size", &self.batch_size)
            .field("max_attempts", &self.max_attempts)
            .field("lease", &self.lease)
            .field("first_backoff", &self.first_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("poll_interval", &self.poll_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("handler_timeout", &self.handler_timeout)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What a worker did, returned when it stops.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Deliveries handed to the handler.
    pub handed: u64,
    /// Handler calls that succeeded (their rows are done).
    pub succeeded: u64,
    /// Handler calls that failed or panicked.
    pub failed: u64,
    /// Rows this worker made dead (attempts used up).
    pub dead: u64,
    /// Handler calls cut off by the shutdown grace period (their rows are
    /// settled as failed attempts).
    pub cut_off: u64,
    /// Done rows purged by [`Worker::purge_done_after`].
    pub purged: u64,
}

/// A running worker: [`shutdown`](Self::shutdown) it gracefully, or
/// [`abort`](Self::abort) it.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<WorkerReport>,
}

impl WorkerHandle {
    /// Stops claiming, lets the handlers in flight finish (up to the
    /// worker's [`shutdown_grace`](Worker::shutdown_grace)), settles their
    /// rows and returns what the worker did.
    pub async fn shutdown(self) -> WorkerReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }

    /// Stops the worker at once, like a crash: rows it holds stay leased
    /// until their leases end, then another worker takes them (counting
    /// the attempt).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Default number of rows claimed at once.
const DEFAULT_BATCH: usize = 128;
/// Default hand-offs before a row is dead: with the default backoff (1 s
/// doubling to 1 h, full jitter) the expected span of 99 waits is about
/// 45 h, and the chance that it falls under 24 h is negligible (each of the
/// ~88 capped waits is uniform on 0..1 h).
const DEFAULT_MAX_ATTEMPTS: u32 = 100;

impl<H: Handler> Worker<H> {
    pub(crate) fn new(inbox: Inbox, handler: H) -> Self {
        Self::with_dispatch(inbox, per_delivery(handler))
    }
}

impl<B: BatchHandler> Worker<Batched<B>> {
    pub(crate) fn new_batched(inbox: Inbox, handler: B) -> Self {
        Self::with_dispatch(inbox, batched(handler))
    }
}

/// Marks a [`Worker`] built by [`Inbox::batch_worker`]: its handler takes
/// whole batches.
#[derive(Debug)]
pub struct Batched<B>(std::marker::PhantomData<fn() -> B>);

/// A batch whose handlers have not all ended after this long goes on
/// without the worker: the worker settles what ended and claims more rows,
/// while the slow rows finish (or time out) on a task of their own.
const DETACH_AFTER: Duration = Duration::from_secs(1);
/// Most groups of slow rows running on their own at once; past it, the
/// worker waits for its batch as a whole again.
const MAX_STRAGGLER_GROUPS: usize = 16;

/// The handlers of a claimed batch still running, and what is settled.
struct Running {
    tasks: JoinSet<TaskResults>,
    running: Vec<Option<(String, u32)>>,
    settled: Vec<(String, Settle)>,
    grace_end: Option<tokio::time::Instant>,
}

impl WorkerReport {
    fn add(&mut self, other: Self) {
        self.handed += other.handed;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.dead += other.dead;
        self.cut_off += other.cut_off;
        self.purged += other.purged;
    }
}

/// How often a worker with [`Worker::purge_done_after`] purges.
const PURGE_EVERY: Duration = Duration::from_secs(60);

impl<H: 'static> Worker<H> {
    fn with_dispatch(inbox: Inbox, dispatch: Arc<Dispatch>) -> Self {
        static WORKERS: AtomicU64 = AtomicU64::new(0);
        let started = super::now_ms();
        let owner = format!(
            "{}-{}-{started}-{}",
            hostname(),
            std::process::id(),
            WORKERS.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            inbox,
            dispatch,
            handler: std::marker::PhantomData,
            retention: None,
            batch_size: DEFAULT_BATCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            lease: Duration::from_secs(30),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(30),
            handler_timeout: Duration::from_secs(300),
            owner,
        }
    }

    /// Rows claimed and handled at once (default 128, at least 1, at most
    /// 10,000). Their handlers run concurrently.
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.clamp(1, 10_000);
        self
    }

    /// Most times a delivery is handed to a handler before its row is dead
    /// (default 100, at least 1: with the default backoff, retries span
    /// well over 24 hours, so an outage of a day kills nothing). A
    /// hand-off cut short by a crash counts.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How long a claimed row stays leased without news from its worker
    /// (default 30 s, at least 1 s; renewed every third of it while its
    /// handler runs). After a crash, its rows wait this long.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// Wait after the first failure, doubled after each further one, at
    /// most `max` (default 1 s and 1 h). Each wait is drawn uniformly
    /// between zero and that bound ("full jitter"), so rows that failed
    /// together (an outage) do not all come back at once.
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// How often an idle worker looks for due rows when nothing woke it
    /// (default 500 ms). Rows committed through the same [`Inbox`] wake it
    /// at once; this catches those of other processes and due retries.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long [`WorkerHandle::shutdown`] waits for handlers in flight
    /// (default 30 s); the ones still running then are cut off and their
    /// rows settled as failed attempts.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Longest one handler call may take (default 5 min); a call still
    /// running then is cut off and counts as a failed attempt. A slow or
    /// hung call does not hold up the others: a second after its batch was
    /// claimed, the rows that ended are settled and the worker claims more,
    /// while the slow ones finish (or time out) on a task of their own.
    #[must_use]
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The lease owner's name, as shown in [`StoredDelivery::lease_owner`](super::StoredDelivery::lease_owner)
    /// (default: host, process id, start time and a counter; keep it
    /// unique per worker).
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Deletes done rows (their raw bodies) once they have been done for
    /// `retention`: every minute (or every half of `retention`, if
    /// shorter), in batches of
    /// [`PURGE_BATCH`](super::PURGE_BATCH) rows between claims, so the
    /// writer is never held for long. Pending, leased, failed and dead rows
    /// are never purged. Default: never. Keep it longer than any sender
    /// retries (Kendo: seconds), or a late retry is handled again.
    #[must_use]
    pub fn purge_done_after(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Runs the worker as a tokio task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[must_use = "dropping the handle stops the worker (as a graceful shutdown nobody waits for)"]
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run_until(stopped));
        WorkerHandle { stop, task }
    }

    /// Runs the worker until `shutdown` completes, then stops as
    /// [`WorkerHandle::shutdown`] does.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> WorkerReport {
        let (stop, stopped) = watch::channel(false);
        let run = self.run_until(stopped);
        tokio::pin!(run);
        tokio::pin!(shutdown);
        tokio::select! {
            report = &mut run => return report,
            () = &mut shutdown => {}
        }
        let _ = stop.send(true);
        run.await
    }

    async fn run_until(self, mut stop: watch::Receiver<bool>) -> WorkerReport {
        let this = Arc::new(self);
        let mut report = WorkerReport::default();
        let mut stragglers: Vec<JoinHandle<WorkerReport>> = Vec::new();
        this.run_loop(&mut stop, &mut report, &mut stragglers).await;
        // Rows still running on their own: they settle (or are cut off
        // after the grace) before the worker reports.
        for straggler in stragglers {
            report.add(straggler.await.unwrap_or_default());
        }
        report
    }

    async fn run_loop(
        self: &Arc<Self>,
        stop: &mut watch::Receiver<bool>,
        report: &mut WorkerReport,
        stragglers: &mut Vec<JoinHandle<WorkerReport>>,
    ) {
        let mut error_wait = Duration::from_millis(50);
        let mut next_purge = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            // Groups of slow rows that ended: their counts join the report.
            let mut index = 0;
            while index < stragglers.len() {
                if stragglers[index].is_finished() {
                    let done = stragglers.swap_remove(index);
                    report.add(done.await.unwrap_or_default());
                } else {
                    index += 1;
                }
            }
            if let Some(retention) = self.retention {
                if tokio::time::Instant::now() >= next_purge {
                    next_purge = tokio::time::Instant::now()
                        + (retention / 2).clamp(Duration::from_millis(100), PURGE_EVERY);
                    report.purged += self.purge_some(retention).await;
                }
            }
            let claimed = self
                .inbox
                .backend()
                .claim(
                    self.owner.clone(),
                    self.batch_size,
                    self.lease,
                    self.max_attempts,
                )
                .await;
            let wait = match claimed {
                Ok(rows) if rows.is_empty() => {
                    error_wait = Duration::from_millis(50);
                    self.poll_interval
                }
                Ok(rows) => {
                    error_wait = Duration::from_millis(50);
                    self.handle_batch(rows, stop, report, stragglers).await;
                    // Look again at once: more rows may be due. A failed
                    // row is not due again before its backoff, so this
                    // cannot spin on it.
                    continue;
                }
                Err(_error) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_error, retry_in = ?error_wait, "inbox worker: could not claim rows");
                    let wait = error_wait;
                    error_wait = (error_wait * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                () = self.inbox.wake().notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = stopped(stop) => break,
            }
        }
    }

    /// Purges done rows older than `retention`, one small batch at a time,
    /// up to a bound per call (the rest waits for the next round).
    async fn purge_some(&self, retention: Duration) -> u64 {
        let mut purged = 0;
        for _ in 0..200 {
            match self
                .inbox
                .backend()
                .purge_done(retention, super::PURGE_BATCH)
                .await
            {
                Ok(deleted) => {
                    purged += deleted;
                    if deleted < super::PURGE_BATCH as u64 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Err(_error) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_error, "inbox worker: could not purge done rows");
                    break;
                }
            }
        }
        purged
    }

    /// Hands a claimed batch to the handler, renews its leases while it
    /// runs and settles it.
    async fn handle_batch(
        self: &Arc<Self>,
        rows: Vec<Claimed>,
        stop: &mut watch::Receiver<bool>,
        report: &mut WorkerReport,
        stragglers: &mut Vec<JoinHandle<WorkerReport>>,
    ) {
        let mut tasks = JoinSet::new();
        let mut running: Vec<Option<(String, u32)>> = Vec::with_capacity(rows.len());
        let mut settled = Vec::with_capacity(rows.len());
        let mut handed = Vec::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            match Delivery::parse(row.body, &row.delivery_id, &row.event_name) {
                Ok(delivery) => {
                    report.handed += 1;
                    handed.push((index, delivery));
                    running.push(Some((row.event_id, row.attempts)));
                }
                Err(rejection) => {
                    // Cannot happen for rows the layer verified; never
                    // hand it, keep it for inspection.
                    running.push(None);
                    report.dead += 1;
                    settled.push((
                        row.event_id,
                        Settle::Dead {
                            error: format!(
                                "the stored body no longer parses as a Kendo delivery ({rejection}); \
                                 it was not handed to the handler"
                            ),
                        },
                    ));
                }
            }
        }
        (self.dispatch)(handed, self.handler_timeout, &mut tasks);
        let batch = Running {
            tasks,
            running,
            settled,
            grace_end: None,
        };
        let detach = (stragglers.len() < MAX_STRAGGLER_GROUPS).then_some(DETACH_AFTER);
        if let Some(rest) = self.drive(batch, stop, report, detach).await {
            // The rest of the batch keeps running on a task of its own, so
            // the worker claims and hands other rows meanwhile.
            let this = Arc::clone(self);
            let mut stop = stop.clone();
            stragglers.push(tokio::spawn(async move {
                let mut report = WorkerReport::default();
                let _ = this.drive(rest, &mut stop, &mut report, None).await;
                report
            }));
        }
    }

    /// Waits for the handlers of a batch, renewing their leases, settling
    /// each as it ends; cut off after the shutdown grace. With `detach`,
    /// gives back what is still running once that long has passed (after
    /// settling what has ended), instead of waiting for the slowest.
    async fn drive(
        &self,
        mut batch: Running,
        stop: &mut watch::Receiver<bool>,
        report: &mut WorkerReport,
        detach: Option<Duration>,
    ) -> Option<Running> {
        let renew_every = self.lease / 3;
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        let detach_at = detach.map(|after| tokio::time::Instant::now() + after);
        loop {
            let grace = async {
                match batch.grace_end {
                    Some(end) => tokio::time::sleep_until(end).await,
                    None => std::future::pending().await,
                }
            };
            let detach_now = async {
                match detach_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = batch.tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    // A panicked task's rows are settled after the loop.
                    let Ok(results) = joined else { continue };
                    for (index, result) in results {
                        let Some((event_id, attempts)) = batch.running.get_mut(index).and_then(Option::take) else { continue };
                        batch.settled.push((event_id, self.settlement(result, attempts, report)));
                    }
                }
                _ = renew.tick() => {
                    let ids: Vec<String> = batch.running.iter().flatten().map(|(id, _)| id.clone()).collect();
                    if !ids.is_empty() {
                        let _ = self.inbox.backend().extend(self.owner.clone(), ids, self.lease).await;
                    }
                }
                () = stopped(stop), if batch.grace_end.is_none() => {
                    batch.grace_end = Some(tokio::time::Instant::now() + self.shutdown_grace);
                }
                () = detach_now, if batch.grace_end.is_none() => {
                    self.settle(std::mem::take(&mut batch.settled)).await;
                    return Some(batch);
                }
                () = grace => {
                    batch.tasks.abort_all();
                    while batch.tasks.join_next().await.is_some() {}
                    for (event_id, attempts) in batch.running.iter_mut().filter_map(Option::take) {
                        report.cut_off += 1;
                        let result = Err("the worker shut down before the handler finished".to_owned());
                        batch.settled.push((event_id, self.settlement(result, attempts, report)));
                    }
                    break;
                }
            }
        }
        // Tasks that ended without a result panicked.
        for (event_id, attempts) in batch.running.iter_mut().filter_map(Option::take) {
            let result = Err("the handler panicked".to_owned());
            batch
                .settled
                .push((event_id, self.settlement(result, attempts, report)));
        }
        self.settle(batch.settled).await;
        None
    }

    fn settlement(
        &self,
        result: Result<(), String>,
        attempts: u32,
        report: &mut WorkerReport,
    ) -> Settle {
        match result {
            Ok(()) => {
                report.succeeded += 1;
                Settle::Done
            }
            Err(error) if attempts >= self.max_attempts => {
                report.failed += 1;
                report.dead += 1;
                Settle::Dead {
                    error: format!("attempt {attempts} of {}: {error}", self.max_attempts),
                }
            }
            Err(error) => {
                report.failed += 1;
                let delay = full_jitter(backoff_bound(
                    self.first_backoff,
                    self.max_backoff,
                    attempts,
                ));
                Settle::Retry {
                    delay,
                    error: format!("attempt {attempts} of {}: {error}", self.max_attempts),
                }
            }
        }
    }

    /// Settles a batch, retrying a few times while the database is
    /// unavailable. Rows it cannot settle stay leased and are handed again
    /// after their leases end (at least once).
    async fn settle(&self, rows: Vec<(String, Settle)>) {
        if rows.is_empty() {
            return;
        }
        let done = rows
            .iter()
            .filter(|(_, how)| matches!(how, Settle::Done))
            .count() as u64;
        let mut rows = Some(rows);
        let mut wait = Duration::from_millis(50);
        for _attempt in 0..8 {
            let batch = rows.take().unwrap_or_default();
            let copy = batch.clone();
            match self.inbox.backend().settle(self.owner.clone(), batch).await {
                Ok(()) => {
                    self.inbox.count_done(done);
                    return;
                }
                Err(_error) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_error, retry_in = ?wait, "inbox worker: could not settle rows");
                    rows = Some(copy);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.lease / 4);
                }
            }
        }
    }
}

/// The longest wait after failed attempt number `attempts` (1-based):
/// `first`, doubled after each further failure, at most `max`.
fn backoff_bound(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    first.saturating_mul(1 << doublings).min(max)
}

/// A wait drawn uniformly from `0..=bound` (std's randomly keyed hasher as
/// the source: no dependency for one number per failure).
fn full_jitter(bound: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(bound.as_nanos());
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    bound.mul_f64(unit)
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across awaits.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_bound_doubles_from_first_up_to_max() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(3600);
        let bounds: Vec<u64> = (0..=14)
            .map(|n| backoff_bound(first, max, n).as_secs())
            .collect();
        assert_eq!(
            bounds,
            [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        // Past 30 doublings the bound stays at max, without overflow.
        assert_eq!(backoff_bound(first, max, u32::MAX), max);
        assert_eq!(
            backoff_bound(Duration::from_secs(u64::MAX / 2), Duration::MAX, 3),
            Duration::MAX
        );
    }

    #[test]
    fn full_jitter_stays_within_its_bound_and_varies() {
        let bound = Duration::from_secs(3600);
        let waits: Vec<Duration> = (0..200).map(|_| full_jitter(bound)).collect();
        assert!(waits.iter().all(|w| *w <= bound));
        assert!(waits.iter().any(|w| *w < bound / 4), "{waits:?}");
        assert!(waits.iter().any(|w| *w > bound * 3 / 4), "{waits:?}");
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
