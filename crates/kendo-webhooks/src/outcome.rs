//! How each request ended, for the `on_outcome` hook, delivery logs and
//! metrics: one report per request, plus one per de-duplication store
//! failure, whatever features are on.
//!
//! ```
//! use kendo_webhooks::{KendoWebhookLayer, Outcome};
//!
//! let layer = KendoWebhookLayer::builder()
//!     .secret("whsec_example")
//!     .on_outcome(|report| match report.outcome() {
//!         Outcome::Accepted { status, latency } => {
//!             println!("{:?} accepted ({status}, {latency:?})", report.event_id())
//!         }
//!         Outcome::StoreFailed { error, .. } => eprintln!("de-duplication store: {error}"),
//!         other => println!("{other:?} for delivery {:?}", report.delivery_id()),
//!     })
//!     .build()?;
//! # Ok::<(), kendo_webhooks::BuildError>(())
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::{Extensions, HeaderMap, StatusCode};

use crate::dedupe::StoreError;
use crate::event::Delivery;
use crate::policy::StoreErrorPolicy;
use crate::reject::Rejection;

/// What happened to one request (or to the store while serving it).
#[non_exhaustive]
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Verified and new; the inner service answered 2xx, so the delivery is
    /// marked done. `latency` is the inner service's own time.
    Accepted {
        /// The inner service's status.
        status: StatusCode,
        /// How long the inner service took.
        latency: Duration,
    },
    /// Verified and new; the inner service answered non-2xx (`status`) or
    /// an error (`None`), so the claim was released for Kendo's retry.
    InnerFailed {
        /// The inner service's status, or `None` when it returned an error.
        status: Option<StatusCode>,
        /// How long the inner service took.
        latency: Duration,
    },
    /// Verified, and already processed: answered 200 with an empty body
    /// and the [`DUPLICATE_HEADER`](crate::DUPLICATE_HEADER), without
    /// calling the inner service, so Kendo stops retrying and nothing runs
    /// twice.
    Duplicate,
    /// Answered by the layer itself with a non-2xx status, so Kendo retries:
    /// the request was refused (see [`Rejection`]), or the same delivery is
    /// still being processed ([`Rejection::InFlight`]).
    Rejected(Rejection),
    /// The de-duplication store failed while serving this request. Under
    /// fail-open a claim failure is followed by an `Accepted` or
    /// `InnerFailed` report (processed without de-duplication); under
    /// fail-closed by `Rejected(StoreUnavailable)`. Failures to renew or
    /// settle a claim are reported here too (the delivery's answer is not
    /// affected).
    StoreFailed {
        /// What the layer was doing: `"claim"`, `"renew"` or `"settle"`.
        operation: &'static str,
        /// The store's error.
        error: &'a StoreError,
        /// The layer's policy, which decided what happened to a failed claim.
        policy: StoreErrorPolicy,
    },
}

impl Outcome<'_> {
    /// A stable snake_case label: `accepted`, `inner_failed`, `duplicate`,
    /// `store_failed`, or the rejection's [`Rejection::as_str`], for
    /// metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::InnerFailed { .. } => "inner_failed",
            Self::Duplicate => "duplicate",
            Self::Rejected(reason) => reason.as_str(),
            Self::StoreFailed { .. } => "store_failed",
        }
    }
}

/// One report to the `on_outcome` hook: the [`Outcome`] and what is known
/// about the delivery so far. Borrowed: copy what you keep.
#[derive(Debug)]
pub struct Report<'a> {
    pub(crate) outcome: Outcome<'a>,
    pub(crate) delivery_id: Option<&'a str>,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) event_name: Option<&'a str>,
    pub(crate) secret_label: Option<&'a str>,
    pub(crate) verified: bool,
    pub(crate) response_headers: Option<&'a HeaderMap>,
    pub(crate) response_extensions: Option<&'a Extensions>,
    pub(crate) delivery: Option<&'a Delivery>,
    pub(crate) body: Option<&'a Bytes>,
    pub(crate) request_headers: Option<&'a HeaderMap>,
}

impl<'a> Report<'a> {
    /// What happened.
    #[must_use]
    pub fn outcome(&self) -> &Outcome<'a> {
        &self.outcome
    }

    /// The `X-Kendo-Delivery-Id` the request carried, if well formed
    /// (unverified unless [`Report::is_verified`]).
    #[must_use]
    pub fn delivery_id(&self) -> Option<&'a str> {
        self.delivery_id
    }

    /// The event id from the signed body, once it was verified and parsed.
    #[must_use]
    pub fn event_id(&self) -> Option<&'a str> {
        self.event_id
    }

    /// The event name from the signed body, once it was verified and parsed.
    #[must_use]
    pub fn event_name(&self) -> Option<&'a str> {
        self.event_name
    }

    /// The label of the secret that verified the request, if it got that far.
    #[must_use]
    pub fn secret_label(&self) -> Option<&'a str> {
        self.secret_label
    }

    /// Whether the signature was verified. An unverified report may come
    /// from a forgery: treat its delivery id as a claim, not a fact.
    #[must_use]
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// The inner service's response headers, when it answered
    /// ([`Outcome::Accepted`], or [`Outcome::InnerFailed`] with a status).
    /// For example the durable inbox's `x-kendo-inbox` header says whether a
    /// delivery was `stored`, or was a `duplicate` that only the database
    /// recognised (a retry after a restart, or on another replica).
    #[must_use]
    pub fn response_headers(&self) -> Option<&'a HeaderMap> {
        self.response_headers
    }

    /// The verified, parsed delivery, once the request got that far: its
    /// typed event, raw body and [`Delivery::schema_drift`].
    #[must_use]
    pub fn delivery(&self) -> Option<&'a Delivery> {
        self.delivery
    }

    /// The raw body as received, once its signature was verified (never an
    /// unverified body): also when the body was then refused for its
    /// content (a number out of range, nesting too deep, a field missing),
    /// so a delivery log can keep it to inspect and replay after a fix.
    #[must_use]
    pub fn verified_body(&self) -> Option<&'a Bytes> {
        self.body
    }

    /// The request's headers as received, for a delivery log. They include
    /// the signature: shorten it before showing it.
    #[must_use]
    pub fn request_headers(&self) -> Option<&'a HeaderMap> {
        self.request_headers
    }

    /// The inner service's response extensions, when it answered: typed
    /// values an inner service leaves for the hook. The durable inbox puts
    /// its `kendo_webhooks_inbox::Enqueued` there (`Stored`, or `Duplicate`
    /// when only the database recognised the event), so a hook reads it
    /// without comparing header strings.
    #[must_use]
    pub fn response_extensions(&self) -> Option<&'a Extensions> {
        self.response_extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_rejections_use_their_names() {
        let latency = Duration::from_millis(3);
        let error = StoreError::new("down");
        let cases = [
            (
                Outcome::Accepted {
                    status: StatusCode::OK,
                    latency,
                },
                "accepted",
            ),
            (
                Outcome::InnerFailed {
                    status: None,
                    latency,
                },
                "inner_failed",
            ),
            (Outcome::Duplicate, "duplicate"),
            (
                Outcome::Rejected(Rejection::InFlight),
                Rejection::InFlight.as_str(),
            ),
            (
                Outcome::StoreFailed {
                    operation: "claim",
                    error: &error,
                    policy: StoreErrorPolicy::FailOpen,
                },
                "store_failed",
            ),
        ];
        for (outcome, label) in cases {
            assert_eq!(outcome.as_str(), label);
        }
    }
}
