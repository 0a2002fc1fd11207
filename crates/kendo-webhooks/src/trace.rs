//! One span per delivery when the `tracing` feature is on; no-ops otherwise.
//!
//! The span `kendo_webhook` carries `delivery_id`, `event_id`, `event`,
//! `outcome`, and `schema_drift` (`field:kind,…`) when the `data` of a
//! known event differs from the typed schema. Neither secrets nor signature
//! values are ever recorded.

use std::future::Future;

use crate::event::Delivery;
use crate::outcome::Outcome;

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tracing::field::Empty;
    use tracing::Instrument;

    /// A future run inside a delivery's [`Span`].
    pub(crate) type Instrumented<F> = tracing::instrument::Instrumented<F>;

    /// The span of one delivery, held by the request's future: fields are
    /// recorded on it directly (no lookup of the current span), and not at
    /// all when no subscriber wants it.
    #[derive(Clone)]
    pub(crate) struct Span(tracing::Span);

    impl Span {
        pub(crate) fn new() -> Self {
            Self(tracing::info_span!(
                "kendo_webhook",
                delivery_id = Empty,
                event_id = Empty,
                event = Empty,
                outcome = Empty,
                schema_drift = Empty,
            ))
        }

        /// Runs `future` (boxed: only the pointer moves) inside this span.
        pub(crate) fn instrument<F: Future>(&self, future: F) -> Instrumented<F> {
            future.instrument(self.0.clone())
        }

        /// Records the (unverified) delivery id header, if well formed.
        pub(crate) fn record_delivery_id(&self, delivery_id: Option<&str>) {
            if let Some(id) = delivery_id.filter(|_| !self.0.is_disabled()) {
                self.0.record("delivery_id", id);
            }
        }

        pub(crate) fn record_delivery(&self, delivery: &Delivery) {
            if !self.0.is_disabled() {
                self.0.record("event_id", delivery.event_id());
                self.0.record("event", delivery.event_name());
                let drift = delivery.schema_drift();
                if !drift.is_empty() {
                    let fields: Vec<String> = drift
                        .iter()
                        .map(|d| format!("{}:{}", d.field, d.kind.as_str()))
                        .collect();
                    self.0.record("schema_drift", fields.join(",").as_str());
                }
            }
        }

        /// Records the outcome and logs it (inside the span, which the
        /// caller's poll has entered). A store failure is logged, and the
        /// request's final outcome recorded by the report that follows.
        pub(crate) fn record_outcome(&self, outcome: &Outcome<'_>) {
            let span = Some(&self.0).filter(|span| !span.is_disabled());
            let record = |value: &str| {
                if let Some(span) = span {
                    span.record("outcome", value);
                }
            };
            match outcome {
                Outcome::Accepted { status, .. } => {
                    record(outcome.as_str());
                    tracing::info!(status = status.as_u16(), "delivery accepted");
                }
                Outcome::InnerFailed {
                    status: Some(status),
                    ..
                } => {
                    record(outcome.as_str());
                    tracing::warn!(
                        status = status.as_u16(),
                        "inner service failed; claim released for Kendo's retry"
                    );
                }
                Outcome::InnerFailed { status: None, .. } => {
                    record(outcome.as_str());
                    tracing::warn!(
                        "inner service returned an error; claim released for Kendo's retry"
                    );
                }
                Outcome::Duplicate => {
                    record(outcome.as_str());
                    tracing::info!(
                        "delivery already processed; answered 200 without the inner service"
                    );
                }
                Outcome::Rejected(reason) => {
                    record(reason.as_str());
                    tracing::info!(
                        status = reason.status().as_u16(),
                        reason = reason.as_str(),
                        "delivery rejected"
                    );
                }
                Outcome::StoreFailed {
                    operation,
                    error,
                    policy,
                } => {
                    let consequence = match (*operation, policy) {
                        ("claim", crate::StoreErrorPolicy::FailClosed) => {
                            "answering 503 (fail-closed)"
                        }
                        ("claim", _) => "processing without de-duplication (fail-open)",
                        ("renew", _) => "the claim may lapse while the service runs",
                        _ => "the delivery's answer stands; a retry may be processed again",
                    };
                    tracing::warn!(%error, operation, "de-duplication store failed: {consequence}");
                }
            }
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod enabled {
    use super::*;

    pub(crate) type Instrumented<F> = F;

    #[derive(Clone)]
    pub(crate) struct Span;

    impl Span {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn instrument<F: Future>(&self, future: F) -> F {
            future
        }
        pub(crate) fn record_delivery_id(&self, _: Option<&str>) {}
        pub(crate) fn record_delivery(&self, _: &Delivery) {}
        pub(crate) fn record_outcome(&self, _: &Outcome<'_>) {}
    }
}

pub(crate) use enabled::*;
