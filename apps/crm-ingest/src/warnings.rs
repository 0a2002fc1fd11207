//! What operators are told: a WARN or ERROR line when deliveries are
//! answered 503 because the inbox cannot commit, when the de-duplication
//! store or the webhook's inner service fails, when the worker's projection
//! fails, and when inbox rows go dead. Each kind is rate-limited
//! ([`RateLimit`], one line per [`WARN_EVERY`]) and says how many lines were
//! held back since the last one.
//!
//! The library's own per-request lines (one per delivery, with the
//! `tracing` feature) are off by default; see [`log_filter`].

use std::sync::Arc;
use std::time::Duration;

use kendo_webhooks::{Delivery, Outcome, Report};
use kendo_webhooks_inbox::{Inbox, INBOX_HEADER};
use tokio::task::JoinHandle;
use tracing_subscriber::filter::Targets;

use crate::pg_error::Chain;
use crate::rate_limit::RateLimit;
use crate::storage::StorageError;

/// At most one line of each kind per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often the inbox is checked for rows that went dead.
pub const DEAD_ROWS_EVERY: Duration = Duration::from_secs(30);

/// The log filter: `RUST_LOG`'s directives (as `Targets`: `info`,
/// `warn,crm_ingest=debug`, …) when given and valid, else `info` for the
/// app with the library's per-request lines (`kendo_webhooks`: one line per
/// delivery, one WARN per inbox 503) at `error`, since this module reports
/// them rate-limited; the inbox worker's own WARNs (it could not claim or
/// settle rows, already spaced by its backoff) stay on.
pub fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("kendo_webhooks", tracing::Level::ERROR)
                .with_target("kendo_webhooks_inbox::worker", tracing::Level::WARN)
        })
}

/// The rate-limited lines; shared by the layer's hook and the worker.
#[derive(Debug)]
pub struct Warnings {
    inbox_unavailable: RateLimit,
    inner_failed: RateLimit,
    store_failed: RateLimit,
    projection_failed: RateLimit,
}

impl Default for Warnings {
    fn default() -> Self {
        Self {
            inbox_unavailable: RateLimit::new(WARN_EVERY),
            inner_failed: RateLimit::new(WARN_EVERY),
            store_failed: RateLimit::new(WARN_EVERY),
            projection_failed: RateLimit::new(WARN_EVERY),
        }
    }
}

impl Warnings {
    /// Called with every outcome of the webhook layer (`on_outcome`).
    pub fn outcome(&self, report: &Report<'_>) {
        match report.outcome() {
            Outcome::InnerFailed { status, .. } => {
                let unavailable = report
                    .response_headers()
                    .and_then(|headers| headers.get(INBOX_HEADER))
                    .is_some_and(|value| value == "unavailable");
                let status = status.map_or(0, |s| s.as_u16());
                if unavailable {
                    if let Some(skipped) = self.inbox_unavailable.check() {
                        tracing::warn!(
                            status,
                            event_id = report.event_id().unwrap_or("-"),
                            not_logged_since_last = skipped,
                            "inbox unavailable: a verified delivery was answered 503 and not \
                             stored; Kendo retries it (3 attempts over about 7 s), so check the \
                             database now"
                        );
                    }
                } else if let Some(skipped) = self.inner_failed.check() {
                    tracing::warn!(
                        status,
                        event_id = report.event_id().unwrap_or("-"),
                        not_logged_since_last = skipped,
                        "webhook handler failed; the delivery was not acknowledged"
                    );
                }
            }
            Outcome::StoreFailed {
                operation,
                error,
                policy,
            } => {
                if let Some(skipped) = self.store_failed.check() {
                    tracing::warn!(
                        error = %Chain(*error),
                        operation,
                        ?policy,
                        not_logged_since_last = skipped,
                        "de-duplication store failed"
                    );
                }
            }
            _ => {}
        }
    }

    /// Called when the worker's projection of a delivery failed (the row
    /// is retried later, or goes dead after its last attempt).
    pub fn projection_failed(&self, delivery: &Delivery, error: &StorageError) {
        if let Some(skipped) = self.projection_failed.check() {
            tracing::warn!(
                error = %Chain(error),
                event_id = delivery.event_id(),
                event = delivery.event_name(),
                not_logged_since_last = skipped,
                "inbox worker: projection failed; the row is retried later"
            );
        }
    }

    /// Checks the inbox every `every` and logs an ERROR when rows went dead
    /// since the last check (and once at start when some are).
    pub fn spawn_dead_rows_watch(
        self: &Arc<Self>,
        inbox: Inbox,
        every: Duration,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut known: Option<u64> = None;
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let dead = match inbox.counts().await {
                    Ok(counts) => counts.dead,
                    Err(error) => {
                        tracing::debug!(%error, "dead-row check skipped");
                        continue;
                    }
                };
                let new = dead.saturating_sub(known.unwrap_or(0));
                if new > 0 {
                    tracing::error!(
                        new,
                        dead,
                        "inbox rows went dead: every attempt to project them failed; see \
                         /api/inbox (the dashboard's events not processed), fix the cause and \
                         requeue them"
                    );
                }
                known = Some(dead);
            }
        })
    }
}
