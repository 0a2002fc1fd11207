//! The `metrics` feature: every [`Outcome`] recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, for whichever exporter the
//! application installs (Prometheus, StatsD, …).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `kendo_webhook_requests_total` | counter | `outcome`: `accepted`, `inner_failed` or a [`Rejection::as_str`](crate::Rejection::as_str) |
//! | `kendo_webhook_inner_duration_seconds` | histogram | `outcome`: `accepted` or `inner_failed` |
//! | `kendo_webhook_store_errors_total` | counter | `operation`: `claim`, `renew` or `settle` |

use crate::outcome::Outcome;

/// Counter of requests by outcome.
pub(crate) const REQUESTS: &str = "kendo_webhook_requests_total";
/// Histogram of the inner service's latency, in seconds.
pub(crate) const INNER_DURATION: &str = "kendo_webhook_inner_duration_seconds";
/// Counter of de-duplication store failures by operation.
pub(crate) const STORE_ERRORS: &str = "kendo_webhook_store_errors_total";

pub(crate) fn record(outcome: &Outcome<'_>) {
    match outcome {
        Outcome::StoreFailed { operation, .. } => {
            metrics::counter!(STORE_ERRORS, "operation" => *operation).increment(1);
        }
        // Literal labels make static keys: no allocation per request.
        Outcome::Accepted { latency, .. } => {
            metrics::counter!(REQUESTS, "outcome" => "accepted").increment(1);
            metrics::histogram!(INNER_DURATION, "outcome" => "accepted")
                .record(latency.as_secs_f64());
        }
        Outcome::InnerFailed { latency, .. } => {
            metrics::counter!(REQUESTS, "outcome" => "inner_failed").increment(1);
            metrics::histogram!(INNER_DURATION, "outcome" => "inner_failed")
                .record(latency.as_secs_f64());
        }
        Outcome::Rejected(_) => {
            metrics::counter!(REQUESTS, "outcome" => outcome.as_str()).increment(1);
        }
    }
}
