//! Why a request was not handed to the inner service, and what to answer.
//!
//! Every variant has a fixed HTTP status and a stable machine-readable name
//! ([`Rejection::as_str`]) that is safe to store in delivery logs and metrics.
//! The status decides what Kendo does next: a 2xx ends the delivery, anything
//! else makes Kendo retry (up to three attempts in total).
//!
//! ```
//! use kendo_webhooks::Rejection;
//!
//! assert_eq!(Rejection::InvalidSignature.status(), http::StatusCode::UNAUTHORIZED);
//! assert_eq!(Rejection::InvalidSignature.as_str(), "invalid_signature");
//! ```

use std::fmt;

use http::StatusCode;

/// The reason a request was answered by the layer instead of the inner service.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The method was not `POST` (405).
    MethodNotAllowed,
    /// `Content-Type` was missing or not `application/json` (415).
    UnsupportedMediaType,
    /// A `Content-Encoding` other than `identity` was sent (415): the
    /// signature covers the bytes Kendo signed, and untrusted input is never
    /// inflated.
    UnsupportedEncoding,
    /// The body (declared or streamed) exceeds the configured limit (413).
    PayloadTooLarge,
    /// The body did not arrive within the read deadline (408).
    BodyTimeout,
    /// Reading the body failed, for example the client went away (400).
    BodyReadFailed,
    /// No `X-Kendo-Signature` header (401).
    MissingSignature,
    /// `X-Kendo-Signature` is not 64 hex digits with an optional `sha256=`
    /// prefix, or was sent twice (401).
    MalformedSignature,
    /// The signature does not match the body under any configured secret (401).
    InvalidSignature,
    /// No `X-Kendo-Delivery-Id` header (400).
    MissingDeliveryId,
    /// `X-Kendo-Delivery-Id` is not 1–256 visible ASCII characters, or was
    /// sent twice (400).
    MalformedDeliveryId,
    /// No `X-Kendo-Event` header (400).
    MissingEventHeader,
    /// `X-Kendo-Event` is not 1–256 visible ASCII characters, or was sent
    /// twice (400).
    MalformedEventHeader,
    /// The body is not JSON, or not an object with string `id`, `event`,
    /// `created_at` and an object `data` (400).
    MalformedEnvelope,
    /// `X-Kendo-Event` names another event than the signed body (400).
    EventMismatch,
    /// A known event lacks its own id (`callId`, `trainingId`) (400).
    MissingObjectId,
    /// `created_at` is outside the configured replay window, or unreadable
    /// while the window is enabled (401).
    OutsideReplayWindow,
    /// The delivery was already processed successfully (200, empty body):
    /// Kendo stops retrying and nothing runs twice.
    Duplicate,
    /// The same delivery is being processed right now (409): Kendo retries
    /// later and finds it done, or free again if that attempt failed.
    InFlight,
    /// The de-duplication store failed and the policy is fail-closed (503).
    StoreUnavailable,
}

impl Rejection {
    /// The status answered for this rejection.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MissingSignature
            | Self::MalformedSignature
            | Self::InvalidSignature
            | Self::OutsideReplayWindow => StatusCode::UNAUTHORIZED,
            Self::BodyReadFailed
            | Self::MissingDeliveryId
            | Self::MalformedDeliveryId
            | Self::MissingEventHeader
            | Self::MalformedEventHeader
            | Self::MalformedEnvelope
            | Self::EventMismatch
            | Self::MissingObjectId => StatusCode::BAD_REQUEST,
            Self::Duplicate => StatusCode::OK,
            Self::InFlight => StatusCode::CONFLICT,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable snake_case name, for logs, metrics and the response body.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::BodyReadFailed => "body_read_failed",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingDeliveryId => "missing_delivery_id",
            Self::MalformedDeliveryId => "malformed_delivery_id",
            Self::MissingEventHeader => "missing_event_header",
            Self::MalformedEventHeader => "malformed_event_header",
            Self::MalformedEnvelope => "malformed_envelope",
            Self::EventMismatch => "event_mismatch",
            Self::MissingObjectId => "missing_object_id",
            Self::OutsideReplayWindow => "outside_replay_window",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// One sentence for humans: what was wrong and what to do about it.
    ///
    /// Never contains the secret, the expected signature or request data.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "Kendo webhooks are delivered with POST.",
            Self::UnsupportedMediaType => "Content-Type must be application/json.",
            Self::UnsupportedEncoding => {
                "Content-Encoding must be absent or identity: the signature covers the raw body."
            }
            Self::PayloadTooLarge => "The body exceeds this endpoint's size limit.",
            Self::BodyTimeout => "The body did not arrive within the read deadline.",
            Self::BodyReadFailed => "The body could not be read to its end.",
            Self::MissingSignature => "The X-Kendo-Signature header is missing.",
            Self::MalformedSignature => {
                "X-Kendo-Signature must be one header of 64 hex digits, optionally prefixed by sha256=."
            }
            Self::InvalidSignature => {
                "X-Kendo-Signature does not match the body under any configured secret; check the endpoint's webhook secret and that the body is sent unchanged."
            }
            Self::MissingDeliveryId => "The X-Kendo-Delivery-Id header is missing.",
            Self::MalformedDeliveryId => {
                "X-Kendo-Delivery-Id must be one header of 1 to 256 visible ASCII characters."
            }
            Self::MissingEventHeader => "The X-Kendo-Event header is missing.",
            Self::MalformedEventHeader => {
                "X-Kendo-Event must be one header of 1 to 256 visible ASCII characters."
            }
            Self::MalformedEnvelope => {
                "The body must be a JSON object with string id, event and created_at, and an object data."
            }
            Self::EventMismatch => "X-Kendo-Event does not name the event in the signed body.",
            Self::MissingObjectId => {
                "The event's data lacks its id (callId for call.uploaded, trainingId for ai.training.completed)."
            }
            Self::OutsideReplayWindow => {
                "created_at is missing, unreadable or too far from the receiver's clock; check both clocks."
            }
            Self::Duplicate => "This delivery was already processed.",
            Self::InFlight => "This delivery is being processed right now; retry later.",
            Self::StoreUnavailable => {
                "The de-duplication store is unavailable; retry later."
            }
        }
    }

    /// Every variant, in declaration order (for tests and metric registries).
    pub const ALL: [Rejection; 20] = [
        Self::MethodNotAllowed,
        Self::UnsupportedMediaType,
        Self::UnsupportedEncoding,
        Self::PayloadTooLarge,
        Self::BodyTimeout,
        Self::BodyReadFailed,
        Self::MissingSignature,
        Self::MalformedSignature,
        Self::InvalidSignature,
        Self::MissingDeliveryId,
        Self::MalformedDeliveryId,
        Self::MissingEventHeader,
        Self::MalformedEventHeader,
        Self::MalformedEnvelope,
        Self::EventMismatch,
        Self::MissingObjectId,
        Self::OutsideReplayWindow,
        Self::Duplicate,
        Self::InFlight,
        Self::StoreUnavailable,
    ];
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.as_str(), self.description())
    }
}

impl std::error::Error for Rejection {}

/// What the layer tells the `on_reject` hook about one rejected request.
///
/// Ids are present as far as the request got: the delivery id comes from the
/// header (and is *unverified* unless [`Rejected::is_verified`]), the event id
/// and name only once the signature was checked and the body parsed.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub(crate) reason: Rejection,
    pub(crate) delivery_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) event_name: Option<String>,
    pub(crate) secret_label: Option<String>,
    pub(crate) verified: bool,
}

impl Rejected {
    /// Why the request was rejected.
    #[must_use]
    pub fn reason(&self) -> Rejection {
        self.reason
    }

    /// The status answered.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The `X-Kendo-Delivery-Id` the request carried, if it was well formed.
    #[must_use]
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }

    /// The event id from the signed body, when it got that far.
    #[must_use]
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// The event name from the signed body, when it got that far.
    #[must_use]
    pub fn event_name(&self) -> Option<&str> {
        self.event_name.as_deref()
    }

    /// The label of the secret that verified the request, when it got that
    /// far (see [`Delivery::secret_label`](crate::Delivery::secret_label)).
    #[must_use]
    pub fn secret_label(&self) -> Option<&str> {
        self.secret_label.as_deref()
    }

    /// Whether the signature had been verified before the rejection
    /// (true for duplicates, in-flight deliveries, replay-window and
    /// store failures). An unverified rejection may be a forgery: treat its
    /// delivery id as a claim, not a fact.
    #[must_use]
    pub fn is_verified(&self) -> bool {
        self.verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_snake_case() {
        let names: HashSet<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Rejection::ALL.len());
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn only_duplicate_answers_success() {
        for reason in Rejection::ALL {
            assert_eq!(
                reason.status().is_success(),
                reason == Rejection::Duplicate,
                "{reason}"
            );
        }
    }

    #[test]
    fn display_starts_with_the_stable_name() {
        let shown = Rejection::EventMismatch.to_string();
        assert!(shown.starts_with("event_mismatch: "), "{shown}");
    }
}
