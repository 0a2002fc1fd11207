//! The inbox's backlog over the last hour and the worker's recent rate,
//! sampled in memory by each replica: the dashboard's backlog chart and
//! `/api/status` read them, and the same task probes the database for
//! `/healthz`. Apart from the dashboard's queries, so the app's state holds
//! it without importing them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kendo_webhooks_inbox::Inbox;

use crate::storage::now_ms;
use crate::views::BacklogSample;

/// How often the backlog is sampled for its chart.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(15);
/// Backlog samples kept: one hour of them.
const BACKLOG_SAMPLES: usize = 240;

/// The inbox's backlog over the last hour, sampled in memory by each
/// replica (the backlog is the shared inbox's, so any replica's samples
/// tell the same story). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BacklogHistory {
    samples: Arc<Mutex<VecDeque<BacklogSample>>>,
    /// The worker's rows/s over the last [`RATE_WINDOW`], as `f64` bits.
    worker_rate: Arc<std::sync::atomic::AtomicU64>,
}

/// How often the sampler probes the database with a write (the health
/// check answers from the newest result).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The span the worker's recent rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

impl BacklogHistory {
    /// Records one sample; the oldest beyond an hour's worth are dropped.
    pub fn record(&self, at_ms: i64, waiting: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == BACKLOG_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(BacklogSample { at_ms, waiting });
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<BacklogSample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().copied().collect()
    }

    /// The worker's rows done per second over the last [`RATE_WINDOW`]
    /// (this process's workers), from memory.
    pub fn worker_rate(&self) -> f64 {
        f64::from_bits(self.worker_rate.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Until the task is aborted: probes the database with a write every
    /// [`PROBE_EVERY`] (so `/healthz` knows, from memory, whether this node
    /// can commit), measures the worker's rate, and samples the backlog
    /// (kept counts, not a scan) every [`BACKLOG_EVERY`].
    pub fn spawn_sampler(&self, inbox: Inbox) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rates: VecDeque<(tokio::time::Instant, u64)> = VecDeque::new();
            let mut last_sample: Option<tokio::time::Instant> = None;
            loop {
                let now = tick.tick().await;
                if let Err(error) = inbox.probe().await {
                    tracing::warn!(%error, "the database cannot be written: /healthz answers 503");
                }
                rates.push_back((now, inbox.health().done_total));
                while rates.len() > 2
                    && now.duration_since(rates[0].0) > RATE_WINDOW + PROBE_EVERY / 2
                {
                    rates.pop_front();
                }
                if let (Some(first), Some(last)) = (rates.front(), rates.back()) {
                    let span = last.0.duration_since(first.0).as_secs_f64();
                    #[allow(clippy::cast_precision_loss)]
                    let rate = if span > 0.0 {
                        last.1.saturating_sub(first.1) as f64 / span
                    } else {
                        0.0
                    };
                    history
                        .worker_rate
                        .store(rate.to_bits(), std::sync::atomic::Ordering::Relaxed);
                }
                if last_sample.is_none_or(|at| now.duration_since(at) >= BACKLOG_EVERY) {
                    last_sample = Some(now);
                    match inbox.counts().await {
                        Ok(counts) => history.record(now_ms(), counts.backlog()),
                        Err(error) => tracing::debug!(%error, "backlog sample skipped"),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_history_keeps_an_hour_of_samples_oldest_first() {
        let history = BacklogHistory::default();
        for i in 0..(BACKLOG_SAMPLES as i64 + 5) {
            history.record(i, u64::try_from(i).unwrap());
        }
        let samples = history.samples();
        assert_eq!(samples.len(), BACKLOG_SAMPLES);
        assert_eq!(samples[0].at_ms, 5);
        assert_eq!(samples.last().unwrap().at_ms, BACKLOG_SAMPLES as i64 + 4);
    }
}
