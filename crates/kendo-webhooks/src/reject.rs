//! Why a request was not handed to the inner service, and what to answer.
//!
//! Every variant has a fixed HTTP status and a stable machine-readable name
//! ([`Rejection::as_str`]) that is safe to store in delivery logs and metrics.
//! The status decides what Kendo does next: none is a 2xx, so Kendo retries
//! (up to three attempts in total). A delivery that was already processed
//! is not a rejection: it is answered 200 ([`Outcome::Duplicate`](crate::Outcome::Duplicate)).
//!
//! ```
//! use kendo_webhooks::Rejection;
//!
//! assert_eq!(Rejection::InvalidSignature.status(), http::StatusCode::UNAUTHORIZED);
//! assert_eq!(Rejection::InvalidSignature.as_str(), "invalid_signature");
//! ```

use std::fmt;

use http::StatusCode;

/// Defines [`Rejection`] and its fixed properties from one table, so a
/// variant's status, name and text can never drift apart.
macro_rules! rejections {
    ($( $(#[doc = $doc:literal])* $variant:ident => $status:ident, $name:literal, $text:literal; )*) => {
        /// The reason a request was answered by the layer instead of the inner service.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Rejection {
            /// Every variant, in declaration order (for tests and metric registries).
            pub const ALL: &'static [Rejection] = &[$(Self::$variant),*];

            /// The status answered for this rejection.
            #[must_use]
            pub const fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }

            /// A stable snake_case name, for logs, metrics and the response body.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// One sentence for humans: what was wrong and what to do about it.
            ///
            /// Never contains the secret, the expected signature or request data.
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// The response body: `"<name>: <description>\n"`, built at compile time.
            pub(crate) const fn response_text(self) -> &'static str {
                match self { $(Self::$variant => concat!($name, ": ", $text, "\n"),)* }
            }
        }
    };
}

rejections! {
    /// The method was not `POST` (405).
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed",
        "Kendo webhooks are delivered with POST.";
    /// `Content-Type` was missing or not `application/json` (415).
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
        "Content-Type must be application/json.";
    /// A `Content-Encoding` other than `identity` was sent (415): the
    /// signature covers the bytes Kendo signed, and untrusted input is never
    /// inflated.
    UnsupportedEncoding => UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding",
        "Content-Encoding must be absent or identity: the signature covers the raw body.";
    /// The body (declared or streamed) exceeds the configured limit (413).
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large",
        "The body exceeds this endpoint's size limit.";
    /// Too many request body bytes are being buffered at once: this one's
    /// would exceed the layer's body budget (503, with `Retry-After`).
    /// Answered as soon as its received bytes do not fit; a declared
    /// `Content-Length` alone is never charged.
    BodyBudgetExhausted => SERVICE_UNAVAILABLE, "body_budget_exhausted",
        "Too many request bodies are being received at once; retry shortly.";
    /// The body did not arrive within the read deadline (408).
    BodyTimeout => REQUEST_TIMEOUT, "body_timeout",
        "The body did not arrive within the read deadline.";
    /// No byte of the body arrived within the body start deadline (408):
    /// the request held its slot without sending.
    BodyNotStarted => REQUEST_TIMEOUT, "body_not_started",
        "No byte of the body arrived within the body start deadline.";
    /// The body arrived slower than the minimum rate (408).
    BodyTooSlow => REQUEST_TIMEOUT, "body_too_slow",
        "The body arrived slower than this endpoint's minimum rate.";
    /// Reading the body failed, for example the client went away, or
    /// `Content-Length` is not a number (400).
    BodyReadFailed => BAD_REQUEST, "body_read_failed",
        "The body could not be read to its end.";
    /// No `X-Kendo-Signature` header (401).
    MissingSignature => UNAUTHORIZED, "missing_signature",
        "The X-Kendo-Signature header is missing.";
    /// `X-Kendo-Signature` is not 64 hex digits with an optional `sha256=`
    /// prefix, or was sent twice (401).
    MalformedSignature => UNAUTHORIZED, "malformed_signature",
        "X-Kendo-Signature must be one header of 64 hex digits, optionally prefixed by sha256=.";
    /// The signature does not match the body under any configured secret (401).
    InvalidSignature => UNAUTHORIZED, "invalid_signature",
        "X-Kendo-Signature does not match the body under any configured secret; check the endpoint's webhook secret and that the body is sent unchanged.";
    /// No `X-Kendo-Delivery-Id` header (400).
    MissingDeliveryId => BAD_REQUEST, "missing_delivery_id",
        "The X-Kendo-Delivery-Id header is missing.";
    /// `X-Kendo-Delivery-Id` is not 1–256 visible ASCII characters, or was
    /// sent twice (400).
    MalformedDeliveryId => BAD_REQUEST, "malformed_delivery_id",
        "X-Kendo-Delivery-Id must be one header of 1 to 256 visible ASCII characters.";
    /// No `X-Kendo-Event` header (400).
    MissingEventHeader => BAD_REQUEST, "missing_event_header",
        "The X-Kendo-Event header is missing.";
    /// `X-Kendo-Event` is not 1–256 visible ASCII characters, or was sent
    /// twice (400).
    MalformedEventHeader => BAD_REQUEST, "malformed_event_header",
        "X-Kendo-Event must be one header of 1 to 256 visible ASCII characters.";
    /// The body is not JSON, or not an object with string `id`, `event`,
    /// `created_at` and an object `data` (400).
    MalformedEnvelope => BAD_REQUEST, "malformed_envelope",
        "The body must be a JSON object with string id, event and created_at, and an object data.";
    /// `X-Kendo-Event` names another event than the signed body (400).
    EventMismatch => BAD_REQUEST, "event_mismatch",
        "X-Kendo-Event does not name the event in the signed body.";
    /// A known event lacks its own id (`callId`, `trainingId`) (400).
    MissingObjectId => BAD_REQUEST, "missing_object_id",
        "The event's data lacks its id (callId for call.uploaded, trainingId for ai.training.completed).";
    /// `created_at` is outside the configured replay window, or unreadable
    /// while the window is enabled (401).
    OutsideReplayWindow => UNAUTHORIZED, "outside_replay_window",
        "created_at is missing, unreadable or too far from the receiver's clock; check both clocks.";
    /// The same delivery was still being processed when the layer's
    /// bounded wait for it ended (409): Kendo retries later and finds it
    /// done, or free again if that attempt failed or its holder died.
    InFlight => CONFLICT, "in_flight",
        "This delivery is being processed right now; retry later.";
    /// The de-duplication store failed and the policy is fail-closed (503,
    /// with `Retry-After`).
    StoreUnavailable => SERVICE_UNAVAILABLE, "store_unavailable",
        "The de-duplication store is unavailable; retry later.";
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.as_str(), self.description())
    }
}

impl std::error::Error for Rejection {}

/// The response the layer answers for a rejection, written once for the
/// layer and for axum's `IntoResponse`: its status, the
/// `x-kendo-webhook-rejection` header and a one-line `text/plain`
/// explanation; a 405 also carries `Allow: POST`, a 503 `Retry-After: 1`.
/// `body` makes the body from the text.
pub(crate) fn rejection_response<B>(
    reason: Rejection,
    body: impl FnOnce(&'static str) -> B,
) -> http::Response<B> {
    use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
    let mut response = http::Response::new(body(reason.response_text()));
    *response.status_mut() = reason.status();
    let headers = response.headers_mut();
    headers.insert(
        crate::headers::REJECTION_HEADER,
        HeaderValue::from_static(reason.as_str()),
    );
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if reason == Rejection::MethodNotAllowed {
        headers.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    if reason.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_snake_case() {
        let names: HashSet<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(Rejection::ALL.len(), 22);
        assert_eq!(names.len(), Rejection::ALL.len());
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn no_rejection_answers_success() {
        // A 2xx would end Kendo's retries for a delivery nobody processed.
        for &reason in Rejection::ALL {
            assert!(
                reason.status().is_client_error() || reason.status().is_server_error(),
                "{reason}"
            );
        }
    }

    #[test]
    fn response_text_is_the_display_text() {
        for &reason in Rejection::ALL {
            assert_eq!(reason.response_text(), format!("{reason}\n"));
        }
    }

    #[test]
    fn display_starts_with_the_stable_name() {
        let shown = Rejection::EventMismatch.to_string();
        assert!(shown.starts_with("event_mismatch: "), "{shown}");
    }
}
