//! One span per delivery when the `tracing` feature is on; no-ops otherwise.
//!
//! The span `kendo_webhook` carries `delivery_id`, `event_id`, `event` and
//! `outcome`. Neither secrets nor signature values are ever recorded.

use std::future::Future;

use http::StatusCode;

use crate::dedupe::StoreError;
use crate::event::Delivery;
use crate::reject::Rejection;

/// How a request ended, for the span's `outcome` field.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum Outcome {
    Accepted(StatusCode),
    InnerFailed(StatusCode),
    InnerError,
    Rejected(Rejection),
}

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tracing::field::Empty;
    use tracing::Instrument;

    pub(crate) fn instrument<F: Future>(future: F) -> impl Future<Output = F::Output> {
        let span = tracing::info_span!(
            "kendo_webhook",
            delivery_id = Empty,
            event_id = Empty,
            event = Empty,
            outcome = Empty,
        );
        future.instrument(span)
    }

    /// Records the (unverified) delivery id header, if well formed.
    pub(crate) fn record_delivery_id(delivery_id: Option<&str>) {
        if let Some(id) = delivery_id {
            tracing::Span::current().record("delivery_id", id);
        }
    }

    pub(crate) fn record_delivery(delivery: &Delivery) {
        let span = tracing::Span::current();
        span.record("event_id", delivery.event_id());
        span.record("event", delivery.event_name());
    }

    pub(crate) fn record_outcome(outcome: Outcome) {
        let span = tracing::Span::current();
        match outcome {
            Outcome::Accepted(status) => {
                span.record("outcome", "accepted");
                tracing::info!(status = status.as_u16(), "delivery accepted");
            }
            Outcome::InnerFailed(status) => {
                span.record("outcome", "inner_failed");
                tracing::warn!(
                    status = status.as_u16(),
                    "inner service failed; claim released for Kendo's retry"
                );
            }
            Outcome::InnerError => {
                span.record("outcome", "inner_error");
                tracing::warn!("inner service returned an error; claim released for Kendo's retry");
            }
            Outcome::Rejected(reason) => {
                span.record("outcome", reason.as_str());
                tracing::info!(
                    status = reason.status().as_u16(),
                    reason = reason.as_str(),
                    "delivery rejected"
                );
            }
        }
    }

    pub(crate) fn store_error(error: &StoreError, consequence: &str) {
        tracing::warn!(%error, "de-duplication store failed: {consequence}");
    }
}

#[cfg(not(feature = "tracing"))]
mod enabled {
    use super::*;

    pub(crate) fn instrument<F: Future>(future: F) -> F {
        future
    }
    pub(crate) fn record_delivery_id(_: Option<&str>) {}
    pub(crate) fn record_delivery(_: &Delivery) {}
    pub(crate) fn record_outcome(_: Outcome) {}
    pub(crate) fn store_error(_: &StoreError, _: &str) {}
}

pub(crate) use enabled::*;
