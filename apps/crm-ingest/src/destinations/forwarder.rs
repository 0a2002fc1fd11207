//! The forwarder: one lane (a task) per target, so a slow or dead target
//! only ever holds up its own rows, never ingest, the projection or the
//! other targets.
//!
//! A lane leases its target's oldest due rows (at most `concurrency`),
//! sends them, and settles each:
//!
//! | answer | row | lane |
//! |---|---|---|
//! | 2xx | delivered | goes on |
//! | 410 Gone | dead at once | goes on |
//! | none (refused, timeout), 408, 429, 5xx | retried | waits (backoff) before its next lease |
//! | other 3xx/4xx | retried after its own backoff | goes on with the next rows |
//!
//! A failure that says the target is down pauses the whole lane, and the
//! oldest row is retried first when it resumes: rows go out in store order
//! (with `concurrency = 1`) and a target back after an outage gets its
//! backlog in order. A row still failing `give_up_after` after it was
//! stored (or replayed) is dead; so are the rows of a target that failed
//! for that long.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::backoff::{random, Backoff};
use super::outbox::Outbox;
use super::rows::{AttemptRecord, Claimed, Next};
use super::sender::{Answer, Headers, Sender};
use super::settings::{RetrySettings, Settings};
use super::signals::{stopping, Waker};
use crate::storage::now_ms;

/// How often an idle lane looks for rows stored by other replicas (rows
/// stored here wake it at once).
const POLL: Duration = Duration::from_millis(500);
/// How often the gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(15);
/// How often delivered rows past the retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Waits after the database failed, before the next lease.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// One target, as a lane sends to it.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    url: reqwest::Url,
    headers: Headers,
    concurrency: i64,
    /// The shared client, or one with the destination's `ca_file`.
    sender: Sender,
}

/// What the watched alerts read: the CRM's tables (the newest delivery),
/// the inbox (dead rows), and the console's origin for links.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The CRM's tables.
    pub storage: crate::storage::Storage,
    /// The inbox.
    pub inbox: kendo_webhooks_inbox::Inbox,
    /// The app's public origin (`CRM_PUBLIC_URL`).
    pub console: Option<String>,
}

/// The running lanes.
#[derive(Debug)]
pub struct Forwarder {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Forwarder {
    /// Starts a lane per destination and alert of `settings`, the watch of
    /// the timed alerts (reading `watched`), and the housekeeping (gauges;
    /// delivered rows purged after `retention`).
    pub fn spawn(
        settings: &Settings,
        outbox: Outbox,
        waker: Waker,
        retention: Duration,
        watched: Watched,
    ) -> Result<Self, String> {
        describe_metrics();
        let sender = Sender::new(settings.retry.timeout, None)?;
        let owner = format!("crm-{}-{:08x}", std::process::id(), random() & 0xffff_ffff);
        let mut targets = Vec::new();
        for d in &settings.destinations {
            let sender = match &d.extra_roots {
                // A client of its own: the extra roots are this one's only.
                Some(pem) => Sender::new(settings.retry.timeout, Some(pem))?,
                None => sender.clone(),
            };
            targets.push(Target {
                name: d.name.clone(),
                url: d.url.clone(),
                headers: Headers::StandardWebhooks(d.key.clone()),
                concurrency: i64::from(d.concurrency),
                sender,
            });
        }
        targets.extend(settings.alerts.iter().map(|a| Target {
            name: a.name.clone(),
            url: a.url.clone(),
            headers: Headers::Plain,
            concurrency: 1,
            sender: sender.clone(),
        }));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = targets
            .into_iter()
            .map(|target| {
                let lane = Lane {
                    target,
                    outbox: outbox.clone(),
                    owner: owner.clone(),
                    retry: settings.retry,
                    backoff: Backoff::new(&settings.retry),
                    waker: waker.clone(),
                    stop: stop_rx.clone(),
                };
                tokio::spawn(lane.run())
            })
            .collect();
        let timed: Vec<_> = settings
            .alerts
            .iter()
            .filter(|a| a.rule.is_watched())
            .cloned()
            .collect();
        if !timed.is_empty() {
            tasks.push(super::alerts::spawn_watch(
                timed,
                outbox.clone(),
                watched.storage,
                watched.inbox,
                waker.clone(),
                watched.console,
                stop_rx.clone(),
            ));
        }
        tasks.push(tokio::spawn(housekeeping(outbox, retention, stop_rx)));
        Ok(Self {
            stop,
            tasks,
            grace: settings.retry.timeout + Duration::from_secs(5),
        })
    }

    /// Stops leasing; attempts in flight finish and are settled (each within
    /// the timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(self.grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

struct Lane {
    target: Target,
    outbox: Outbox,
    owner: String,
    retry: RetrySettings,
    backoff: Backoff,
    waker: Waker,
    stop: watch::Receiver<bool>,
}

/// How an answer counts.
enum Verdict {
    Delivered,
    Gone,
    /// The target looks down: the lane pauses.
    TargetDown,
    /// This row was refused: it waits, the others go on.
    RowRefused,
}

fn verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Status(status, _) if (200..300).contains(status) => Verdict::Delivered,
        Answer::Status(410, _) => Verdict::Gone,
        Answer::Status(408 | 429, _) | Answer::Nothing(_) => Verdict::TargetDown,
        Answer::Status(status, _) if *status >= 500 => Verdict::TargetDown,
        Answer::Status(..) => Verdict::RowRefused,
    }
}

impl Lane {
    async fn run(mut self) {
        // Failures in a row of the target as a whole.
        let mut failures: u32 = 0;
        // The lease covers one attempt and its settle.
        let lease = i64::try_from((self.retry.timeout + Duration::from_secs(5)).as_millis())
            .unwrap_or(i64::MAX);
        while !stopping(&self.stop) {
            let now = now_ms();
            let rows = match self
                .outbox
                .claim(
                    &self.target.name,
                    self.target.concurrency,
                    &self.owner,
                    now,
                    now.saturating_add(lease),
                )
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(destination = %self.target.name, %error, "could not lease outbox rows; trying again");
                    self.pause(STORE_RETRY).await;
                    continue;
                }
            };
            if rows.is_empty() {
                let notified = self.waker.notified();
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(POLL) => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            let answers = self.send_all(&rows).await;
            let down = answers
                .iter()
                .any(|(_, answer, _)| matches!(verdict(answer), Verdict::TargetDown));
            let pause = if down {
                failures = failures.saturating_add(1);
                Some(self.backoff.delay(failures, random()))
            } else {
                if answers
                    .iter()
                    .any(|(_, a, _)| matches!(verdict(a), Verdict::Delivered))
                {
                    failures = 0;
                }
                None
            };
            for (row, answer, record) in answers {
                self.settle(&row, &answer, record, pause).await;
            }
            if let Some(pause) = pause {
                let window_start = now_ms().saturating_sub(self.give_up_ms());
                match self
                    .outbox
                    .expire(&self.target.name, window_start, now_ms())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!("crm_destination_deliveries_total", "destination" => self.target.name.clone(), "outcome" => "dead").increment(n);
                        tracing::warn!(destination = %self.target.name, rows = n, "gave up on rows: the destination kept failing for the whole retry window");
                    }
                    Err(error) => {
                        tracing::warn!(destination = %self.target.name, %error, "could not expire outbox rows");
                    }
                }
                self.pause(pause).await;
            }
        }
    }

    fn give_up_ms(&self) -> i64 {
        i64::try_from(self.retry.give_up_after.as_millis()).unwrap_or(i64::MAX)
    }

    /// Sends every row at once (at most `concurrency` of them).
    async fn send_all(&self, rows: &[Claimed]) -> Vec<(Claimed, Answer, AttemptRecord)> {
        let mut set = JoinSet::new();
        for (i, row) in rows.iter().enumerate() {
            let (target, row) = (self.target.clone(), row.clone());
            set.spawn(async move {
                let at_ms = now_ms();
                let (answer, took) = target
                    .sender
                    .send(
                        &target.url,
                        &target.headers,
                        &row.event_id,
                        at_ms / 1000,
                        row.body.clone(),
                    )
                    .await;
                metrics::histogram!("crm_destination_attempt_duration_seconds", "destination" => target.name.clone())
                    .record(took.as_secs_f64());
                let (status, text) = match &answer {
                    Answer::Status(status, text) => (Some(*status), text.clone()),
                    Answer::Nothing(error) => (None, error.clone()),
                };
                let record = AttemptRecord {
                    at_ms,
                    status,
                    answer: text,
                    latency_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
                };
                (i, row, answer, record)
            });
        }
        let mut done = Vec::with_capacity(rows.len());
        while let Some(joined) = set.join_next().await {
            if let Ok(result) = joined {
                done.push(result);
            }
        }
        done.sort_by_key(|(i, ..)| *i);
        done.into_iter()
            .map(|(_, row, answer, record)| (row, answer, record))
            .collect()
    }

    async fn settle(
        &self,
        row: &Claimed,
        answer: &Answer,
        record: AttemptRecord,
        pause: Option<Duration>,
    ) {
        let name = &self.target.name;
        let expired = record.at_ms.saturating_sub(row.since_ms) >= self.give_up_ms();
        let retry_at = |wait: Duration| {
            Next::RetryAt(
                record
                    .at_ms
                    .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
            )
        };
        let (next, outcome) = match verdict(answer) {
            Verdict::Delivered => (Next::Delivered, "delivered"),
            Verdict::Gone => (Next::Dead, "gone"),
            _ if expired => (Next::Dead, "dead"),
            Verdict::TargetDown => (retry_at(pause.unwrap_or_default()), "failed"),
            Verdict::RowRefused => {
                let failures = u32::try_from(row.attempt).unwrap_or(u32::MAX);
                (retry_at(self.backoff.delay(failures, random())), "failed")
            }
        };
        metrics::counter!("crm_destination_deliveries_total", "destination" => name.clone(), "outcome" => outcome)
            .increment(1);
        match outcome {
            "delivered" => {}
            "failed" => {
                tracing::debug!(destination = %name, event_id = %row.event_id, attempt = row.attempt, answer = ?answer, "attempt failed; retrying")
            }
            _ => {
                tracing::warn!(destination = %name, event_id = %row.event_id, attempt = row.attempt, answer = ?answer, "gave up on an event ({outcome}); replay it from /destinations")
            }
        }
        match self.outbox.settle(row, &self.owner, next, record).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(destination = %name, event_id = %row.event_id, "an attempt's lease ran out before it was settled; another replica may send the event again")
            }
            // The lease runs out and the row is sent again: at least once.
            Err(error) => {
                tracing::warn!(destination = %name, event_id = %row.event_id, %error, "could not settle an attempt; it will be sent again")
            }
        }
    }

    /// Sleeps `wait`, or until stopped.
    async fn pause(&mut self, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = self.stop.changed() => {}
        }
    }
}

/// Gauges per target, and the purge of delivered rows past `retention`.
async fn housekeeping(outbox: Outbox, retention: Duration, mut stop: watch::Receiver<bool>) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut last_purge: Option<tokio::time::Instant> = None;
    while !stopping(&stop) {
        match outbox.counts().await {
            Ok(counts) => {
                for c in counts {
                    #[allow(clippy::cast_precision_loss)]
                    {
                        metrics::gauge!("crm_destination_pending", "destination" => c.name.clone())
                            .set(c.pending as f64);
                        metrics::gauge!("crm_destination_dead", "destination" => c.name)
                            .set(c.dead as f64);
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "could not count the outbox"),
        }
        if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            match outbox.purge(now_ms().saturating_sub(retention_ms)).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(rows = n, "purged delivered outbox rows past the retention")
                }
                Err(error) => tracing::warn!(%error, "could not purge delivered outbox rows"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(GAUGES_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Describes the metrics once (Prometheus `# HELP` lines).
fn describe_metrics() {
    metrics::describe_counter!(
        "crm_destination_deliveries_total",
        "Attempts to send to destinations and alerts, by destination and outcome \
         (delivered, failed: retried later, gone: 410 stopped it, dead: retries given up)"
    );
    metrics::describe_histogram!(
        "crm_destination_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "How long one attempt to a destination took, answer or not"
    );
    metrics::describe_gauge!(
        "crm_destination_pending",
        "Outbox rows of a destination waiting or being retried (refreshed every 15 s)"
    );
    metrics::describe_gauge!(
        "crm_destination_dead",
        "Outbox rows of a destination given up on; replay them from /destinations"
    );
}
