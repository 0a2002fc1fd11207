//! The HTTP headers of Kendo's deliveries, and the one the layer answers
//! with: names every part of the crate (the pipeline, the sender, the
//! rejections) shares, so none depends on another for them.

use http::HeaderName;

/// `X-Kendo-Signature`: HMAC-SHA256 of the raw body, hex.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-kendo-signature");
/// `X-Kendo-Event`: the event name.
pub const EVENT_HEADER: HeaderName = HeaderName::from_static("x-kendo-event");
/// `X-Kendo-Delivery-Id`: unique per delivery, repeated on Kendo's retries.
pub const DELIVERY_ID_HEADER: HeaderName = HeaderName::from_static("x-kendo-delivery-id");
/// Set on every rejection the layer answers itself, holding
/// [`Rejection::as_str`](crate::Rejection::as_str), so a sender's logs show why without reading bodies.
pub const REJECTION_HEADER: HeaderName = HeaderName::from_static("x-kendo-webhook-rejection");
/// Set (to `true`) on the empty 200 the layer answers for a delivery it
/// already processed ([`Outcome::Duplicate`](crate::Outcome::Duplicate)):
/// the inner service was not called again.
pub const DUPLICATE_HEADER: HeaderName = HeaderName::from_static("x-kendo-webhook-duplicate");
