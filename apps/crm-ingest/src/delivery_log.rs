//! The delivery log, fed by the layer's `on_outcome` hook: verified
//! deliveries become entries (kept apart, with their own bound);
//! unverified rejections are counted per reason and minute, their newest
//! attempts kept one by one in a table of their own, and logged as a
//! rate-limited WARN line. The hook never blocks a request: it queues,
//! and a writer task commits in batches. A verified entry keeps the raw
//! body, the headers and the answer ([`crate::captured`]), also when the
//! body was refused for its content, so it can be seen and replayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kendo_webhooks::{Outcome, Rejection, Report};
use kendo_webhooks_inbox::Enqueued;
use tokio::sync::{mpsc, oneshot};

use crate::outcome::DeliveryOutcome;
use crate::pg_error::Chain;
use crate::rate_limit::RateLimit;
use crate::storage::{now_ms, LogBatch, LogRecord, RejectionCount, Storage, UnverifiedEntry};

/// Unverified rejections queued between the hook and the writer; beyond
/// this, they are dropped (and counted) rather than slowing requests down.
/// Verified entries have a queue of their own, never dropped: a flood of
/// forgeries cannot cost a verified entry.
const QUEUE: usize = 4096;
/// Most queued items written in one batch.
const BATCH: usize = 1024;
/// At most one WARN line per rejection reason in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often, at most, the written entries are added to the search index
/// (in bulk: [`Storage::index_search`]); after a write, so when traffic
/// stops the last entries wait for the next one (searches read them
/// directly meanwhile).
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// What the hook queues.
enum Item {
    Entry(LogRecord),
    Rejected {
        reason: &'static str,
        status: u16,
        delivery_id: Option<String>,
        at_ms: i64,
    },
}

/// The hook's side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct DeliveryLog {
    /// Verified entries: unbounded, so none is ever dropped (each is a
    /// delivery the server already answered; the writer drains them in
    /// batches far faster than any ingest rate).
    verified: mpsc::UnboundedSender<Item>,
    /// Unverified rejections: bounded, dropped (and counted) when full.
    tx: mpsc::Sender<Item>,
    queued: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    warned: Arc<Mutex<HashMap<&'static str, (Instant, u64)>>>,
}

/// The writer task and the way to stop it.
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Writes what is queued, then returns.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl DeliveryLog {
    /// Starts the writer on `storage`: keeps `keep` verified entries and
    /// `keep_minutes` minutes of rejection counts.
    pub fn start(storage: Storage, keep: usize, keep_minutes: i64) -> (Self, Writer) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (verified, verified_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write(
            storage,
            verified_rx,
            rx,
            stop_rx,
            keep,
            keep_minutes,
            Arc::clone(&queued),
        ));
        let log = Self {
            verified,
            tx,
            queued,
            dropped: Arc::new(AtomicU64::new(0)),
            warned: Arc::new(Mutex::new(HashMap::new())),
        };
        (log, Writer { stop, task })
    }

    /// Unverified rejections dropped because the writer fell behind
    /// (verified entries are never dropped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Verified entries waiting for the writer.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The `on_outcome` hook.
    pub fn record(&self, report: &Report<'_>) {
        let at_ms = now_ms();
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let entry = |outcome, reason, status: u16, latency: Option<Duration>| {
            // A body refused for its content still names its event.
            let (refused_id, refused_event) = crate::captured::refused_ids(report);
            LogRecord {
                delivery_id: owned(report.delivery_id()),
                event_id: owned(report.event_id()).or(refused_id),
                event: owned(report.event_name()).or(refused_event),
                outcome,
                reason,
                status,
                secret_label: owned(report.secret_label()),
                latency_ms: latency.map(|l| l.as_secs_f64() * 1000.0),
                received_ms: at_ms,
                body: crate::captured::body(report),
                headers: crate::captured::headers(report),
                answer: Some(crate::captured::answer(report, status)),
            }
        };
        let item = match report.outcome() {
            // A retry only the database recognised (after a restart, or
            // first seen on another replica) is a duplicate too.
            Outcome::Accepted { status, latency } if inbox_duplicate(report) => Item::Entry(entry(
                DeliveryOutcome::Duplicate,
                Some("inbox_duplicate"),
                status.as_u16(),
                Some(*latency),
            )),
            Outcome::Accepted { status, latency } => Item::Entry(entry(
                DeliveryOutcome::Accepted,
                None,
                status.as_u16(),
                Some(*latency),
            )),
            Outcome::InnerFailed { status, latency } => Item::Entry(entry(
                DeliveryOutcome::Failed,
                Some("inner_status"),
                status.map_or(500, |s| s.as_u16()),
                Some(*latency),
            )),
            Outcome::Duplicate => Item::Entry(entry(
                DeliveryOutcome::Duplicate,
                Some(report.outcome().as_str()),
                200,
                None,
            )),
            Outcome::Rejected(reason) if report.is_verified() => {
                let outcome = match reason {
                    Rejection::InFlight => DeliveryOutcome::Duplicate,
                    _ => DeliveryOutcome::Rejected,
                };
                Item::Entry(entry(
                    outcome,
                    Some(reason.as_str()),
                    reason.status().as_u16(),
                    None,
                ))
            }
            Outcome::Rejected(reason) => {
                self.warn(*reason, report.delivery_id());
                Item::Rejected {
                    reason: reason.as_str(),
                    status: reason.status().as_u16(),
                    delivery_id: owned(report.delivery_id()),
                    at_ms,
                }
            }
            // Followed by its own Accepted/InnerFailed/Rejected report;
            // logged (rate-limited) by `crate::warnings`.
            Outcome::StoreFailed { .. } => return,
            _ => return,
        };
        if matches!(item, Item::Entry(_)) {
            self.queued.fetch_add(1, Ordering::Relaxed);
            if self.verified.send(item).is_err() {
                // Only after shutdown.
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.tx.try_send(item).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped_total = dropped,
                    "delivery log is behind (or shutting down): entry dropped"
                );
            }
        }
    }

    /// One WARN line per reason per [`WARN_EVERY`], saying how many were
    /// not logged in between.
    fn warn(&self, reason: Rejection, delivery_id: Option<&str>) {
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, suppressed) = warned
            .entry(reason.as_str())
            .or_insert((now - WARN_EVERY * 2, 0));
        if now.duration_since(*last) < WARN_EVERY {
            *suppressed += 1;
            return;
        }
        let since_last = std::mem::take(suppressed);
        *last = now;
        drop(warned);
        let hint = match reason {
            Rejection::InvalidSignature => {
                "the signature does not match: check KENDO_WEBHOOK_SECRET against Kendo's \
                 webhook settings (a rotated secret goes in KENDO_WEBHOOK_SECRET_PREVIOUS)"
            }
            _ => "an unverified request was refused",
        };
        tracing::warn!(
            reason = reason.as_str(),
            status = reason.status().as_u16(),
            delivery_id = delivery_id.unwrap_or("-"),
            not_logged_since_last = since_last,
            "webhook rejected: {hint}"
        );
    }
}

/// Whether the inbox found the event already stored.
fn inbox_duplicate(report: &Report<'_>) -> bool {
    report
        .response_extensions()
        .and_then(|extensions| extensions.get::<Enqueued>())
        == Some(&Enqueued::Duplicate)
}

/// Most verified entries written in one batch.
const VERIFIED_BATCH: usize = 8192;

async fn write(
    storage: Storage,
    mut verified: mpsc::UnboundedReceiver<Item>,
    mut rx: mpsc::Receiver<Item>,
    mut stop: oneshot::Receiver<()>,
    keep: usize,
    keep_minutes: i64,
    queued: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    // One WARN per interval however many batches fail (a database outage
    // fails every one), with the entries lost since the last line.
    let write_failed = RateLimit::new(WARN_EVERY);
    let mut lost_since_warn = 0usize;
    let (mut verified_open, mut unverified_open) = (true, true);
    let index_failed = RateLimit::new(WARN_EVERY);
    let mut indexed_at = Instant::now();
    loop {
        // Verified entries first, each batch; then what unverified
        // rejections are waiting, at most BATCH of them.
        let received = if stopping {
            let mut n = 0;
            if verified_open {
                n = verified.recv_many(&mut batch, VERIFIED_BATCH).await;
                verified_open = n > 0;
            }
            if n == 0 && unverified_open {
                n = rx.recv_many(&mut batch, BATCH).await;
                unverified_open = n > 0;
            }
            n
        } else {
            tokio::select! {
                biased;
                _ = &mut stop => {
                    verified.close();
                    rx.close();
                    stopping = true;
                    continue;
                }
                item = verified.recv() => item.map(|item| batch.push(item)).is_some() as usize,
                item = rx.recv() => item.map(|item| batch.push(item)).is_some() as usize,
            }
        };
        if received == 0 {
            if stopping && !verified_open && !unverified_open {
                break;
            }
            if !stopping {
                // Both senders gone (the app dropped its log).
                break;
            }
            continue;
        }
        // Whatever else is already waiting goes into the same commit.
        while let Ok(item) = verified.try_recv() {
            batch.push(item);
            if batch.len() >= VERIFIED_BATCH * 2 {
                break;
            }
        }
        let mut taken = 0;
        while taken < BATCH {
            match rx.try_recv() {
                Ok(item) => {
                    batch.push(item);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let items = split(std::mem::take(&mut batch));
        let entries = items.entries.len() as u64;
        let count = items.len();
        let since = now_ms() - keep_minutes.saturating_mul(60_000);
        let mut wait = Duration::from_millis(50);
        // Verified entries are retried until written (or the app stops).
        loop {
            match storage.log(items.clone(), keep, since).await {
                Ok(()) => break,
                Err(error) if entries > 0 && !stopping => {
                    if let Some(skipped) = write_failed.check() {
                        tracing::warn!(
                            error = %Chain(&error),
                            pending = count,
                            retry_in = ?wait,
                            not_logged_since_last = skipped,
                            "delivery-log entries could not be written; retrying"
                        );
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    lost_since_warn += count;
                    if let Some(skipped) = write_failed.check() {
                        tracing::warn!(
                            error = %Chain(&error),
                            lost = std::mem::take(&mut lost_since_warn),
                            not_logged_since_last = skipped,
                            "delivery-log entries could not be written"
                        );
                    }
                    break;
                }
            }
        }
        queued.fetch_sub(
            entries.min(queued.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if indexed_at.elapsed() >= INDEX_EVERY {
            index_search(&storage, &index_failed).await;
            indexed_at = Instant::now();
        }
    }
    index_search(&storage, &index_failed).await;
}

/// Adds the entries written since the last time to the search index. A
/// failure is a warning: the rows stay for the next time, and searches
/// read them directly meanwhile.
async fn index_search(storage: &Storage, failed: &RateLimit) {
    if let Err(error) = storage.index_search().await {
        if let Some(skipped) = failed.check() {
            tracing::warn!(
                error = %Chain(&error),
                not_logged_since_last = skipped,
                "the delivery log could not be indexed for search (searches still find its entries, by a slower scan)"
            );
        }
    }
}

/// Verified entries as they are; unverified rejections one by one (the
/// store keeps the newest) and summed per minute and reason.
fn split(items: Vec<Item>) -> LogBatch {
    let mut entries = Vec::new();
    let mut unverified = Vec::new();
    let mut counts: HashMap<(i64, &'static str), RejectionCount> = HashMap::new();
    for item in items {
        match item {
            Item::Entry(entry) => entries.push(entry),
            Item::Rejected {
                reason,
                status,
                delivery_id,
                at_ms,
            } => {
                let minute_ms = at_ms - at_ms.rem_euclid(60_000);
                unverified.push(UnverifiedEntry {
                    delivery_id: delivery_id.clone(),
                    reason,
                    status,
                    received_ms: at_ms,
                });
                let count = counts
                    .entry((minute_ms, reason))
                    .or_insert_with(|| RejectionCount {
                        minute_ms,
                        reason,
                        status,
                        count: 0,
                        last_delivery_id: None,
                        last_ms: at_ms,
                    });
                count.count += 1;
                count.last_ms = count.last_ms.max(at_ms);
                if delivery_id.is_some() {
                    count.last_delivery_id = delivery_id;
                }
            }
        }
    }
    let mut rejections: Vec<_> = counts.into_values().collect();
    rejections.sort_by_key(|r| (r.minute_ms, r.reason));
    LogBatch {
        entries,
        unverified,
        rejections,
    }
}
