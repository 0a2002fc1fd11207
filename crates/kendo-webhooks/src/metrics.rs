//! The `metrics` feature: every [`Outcome`] recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, for whichever exporter the
//! application installs (Prometheus, StatsD, …).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `kendo_webhook_requests_total` | counter | `outcome`: `accepted`, `inner_failed`, `duplicate` or a [`Rejection::as_str`](crate::Rejection::as_str) |
//! | `kendo_webhook_inner_duration_seconds` | histogram | `outcome`: `accepted` or `inner_failed` |
//! | `kendo_webhook_store_errors_total` | counter | `operation`: `claim`, `renew` or `settle` |
//! | `kendo_webhook_schema_drift_total` | counter | `event`, `field`, `kind` (`missing`, `other_type`, `new`): accepted deliveries whose `data` differs from the typed schema ([`Delivery::schema_drift`](crate::Delivery::schema_drift)) |

use metrics::Unit;

use crate::event::Delivery;
use crate::outcome::Outcome;

/// Registers the HELP text and unit of each of the layer's metrics with the
/// installed recorder (a Prometheus exporter prints them as `# HELP` lines).
///
/// [`KendoWebhookLayerBuilder::build`](crate::KendoWebhookLayerBuilder::build)
/// calls it; call it yourself when you install the recorder after building
/// the layer. Calling it again is harmless.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "kendo_webhook_requests_total",
        Unit::Count,
        "Kendo webhook requests by how they ended: accepted, inner_failed, duplicate, or the rejection reason."
    );
    metrics::describe_histogram!(
        "kendo_webhook_inner_duration_seconds",
        Unit::Seconds,
        "Time the inner service took with a verified, new Kendo delivery, by outcome."
    );
    metrics::describe_counter!(
        "kendo_webhook_store_errors_total",
        Unit::Count,
        "De-duplication store failures, by operation: claim, renew or settle."
    );
    metrics::describe_counter!(
        "kendo_webhook_schema_drift_total",
        Unit::Count,
        "Accepted Kendo deliveries whose data differs from the typed schema, by event, field and kind (missing, other_type, new)."
    );
}

/// Counts each drifted field of an accepted delivery (labels from the
/// verified body: Kendo's own field names, cut to 64 bytes).
pub(crate) fn record_drift(delivery: &Delivery) {
    for drift in delivery.schema_drift() {
        metrics::counter!(
            "kendo_webhook_schema_drift_total",
            "event" => delivery.event_name().to_owned(),
            "field" => drift.field.clone(),
            "kind" => drift.kind.as_str()
        )
        .increment(1);
    }
}

// The names are written as literals in the macros below, not as constants:
// only a literal name (with literal labels) makes a `static` key, which
// costs nothing per request; a constant name builds and hashes the key on
// every call. `tests/metrics.rs` checks the names.

pub(crate) fn record(outcome: &Outcome<'_>) {
    match outcome {
        Outcome::StoreFailed { operation, .. } => {
            metrics::counter!("kendo_webhook_store_errors_total", "operation" => *operation)
                .increment(1);
        }
        Outcome::Accepted { latency, .. } => {
            metrics::counter!("kendo_webhook_requests_total", "outcome" => "accepted").increment(1);
            metrics::histogram!("kendo_webhook_inner_duration_seconds", "outcome" => "accepted")
                .record(latency.as_secs_f64());
        }
        Outcome::InnerFailed { latency, .. } => {
            metrics::counter!("kendo_webhook_requests_total", "outcome" => "inner_failed")
                .increment(1);
            metrics::histogram!("kendo_webhook_inner_duration_seconds", "outcome" => "inner_failed")
                .record(latency.as_secs_f64());
        }
        Outcome::Duplicate | Outcome::Rejected(_) => {
            metrics::counter!("kendo_webhook_requests_total", "outcome" => outcome.as_str())
                .increment(1);
        }
    }
}
