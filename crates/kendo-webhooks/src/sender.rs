//! The sending side, exactly as Kendo does it: for your own tests and tools.
//!
//! Build a delivery with [`TestDelivery`](crate::TestDelivery) and sign it,
//! or sign a raw body exactly as given with [`SignedDelivery::builder`]:
//!
//! ```
//! use kendo_webhooks::{SignedDelivery, TestDelivery};
//!
//! let delivery = TestDelivery::example("call.uploaded")
//!     .event_id("evt_1")
//!     .delivery_id("dlv_1")
//!     .sign("whsec_test");
//! let request = delivery.request("http://127.0.0.1:3000/webhooks/kendo")?;
//! assert_eq!(request.method(), http::Method::POST);
//! assert_eq!(request.headers()["x-kendo-delivery-id"], "dlv_1");
//! assert_eq!(request.headers()["x-kendo-signature"], delivery.signature());
//!
//! // Bytes of your own, signed unchanged (a malformed body, say):
//! let raw = SignedDelivery::builder(&b"{\"id\": 1e400}"[..])
//!     .event("call.uploaded")
//!     .delivery_id("dlv_2")
//!     .sign("whsec_test");
//! assert_eq!(raw.body().as_ref(), b"{\"id\": 1e400}");
//! # Ok::<(), http::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::headers::{DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use crate::payload::{AI_TRAINING_COMPLETED, CALL_UPLOADED};
use crate::signature::sign;

/// A delivery signed as Kendo signs it: the body, its signature and the
/// headers that go with it.
#[derive(Debug, Clone)]
pub struct SignedDelivery {
    event: String,
    delivery_id: String,
    body: Bytes,
    signature: String,
}

impl SignedDelivery {
    /// Starts signing `body` exactly as given (any bytes, valid JSON or
    /// not); name its headers with the builder's methods, then
    /// [`sign`](SignedDeliveryBuilder::sign) it. For a well-formed delivery
    /// built from fields, use [`TestDelivery`](crate::TestDelivery).
    pub fn builder(body: impl Into<Bytes>) -> SignedDeliveryBuilder {
        SignedDeliveryBuilder {
            body: body.into(),
            event: None,
            delivery_id: None,
        }
    }

    pub(crate) fn from_parts(
        secret: impl AsRef<[u8]>,
        event: impl Into<String>,
        delivery_id: impl Into<String>,
        body: Bytes,
    ) -> Self {
        Self {
            signature: sign(secret, &body),
            event: event.into(),
            delivery_id: delivery_id.into(),
            body,
        }
    }

    /// The `X-Kendo-Signature` value (lowercase hex, no prefix).
    #[must_use]
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The `X-Kendo-Event` value.
    #[must_use]
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The `X-Kendo-Delivery-Id` value.
    #[must_use]
    pub fn delivery_id(&self) -> &str {
        &self.delivery_id
    }

    /// The signed body.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The four headers Kendo sends with every delivery.
    ///
    /// # Panics
    ///
    /// If the event name or delivery id holds characters not allowed in an
    /// HTTP header (control characters); use ids as Kendo does.
    #[must_use]
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(SIGNATURE_HEADER, header_value(&self.signature));
        headers.insert(EVENT_HEADER, header_value(&self.event));
        headers.insert(DELIVERY_ID_HEADER, header_value(&self.delivery_id));
        headers
    }

    /// A `POST` to `uri` with the four headers and the body.
    ///
    /// # Errors
    ///
    /// When `uri` is not a valid URI or a header value is not valid.
    pub fn request(&self, uri: &str) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut builder = Request::builder().method(Method::POST).uri(uri);
        builder = builder
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &self.signature)
            .header(EVENT_HEADER, &self.event)
            .header(DELIVERY_ID_HEADER, &self.delivery_id);
        builder.body(Full::new(self.body.clone()))
    }
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("event names and delivery ids are visible ASCII")
}

/// A raw body on its way to being signed: from [`SignedDelivery::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SignedDeliveryBuilder {
    body: Bytes,
    event: Option<String>,
    delivery_id: Option<String>,
}

impl SignedDeliveryBuilder {
    /// Sets `X-Kendo-Event` (default: the body's `event` field when the
    /// body is a JSON object with one, else empty).
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Sets `X-Kendo-Delivery-Id` (default: fresh in this process,
    /// `dlv_raw_<n>`).
    pub fn delivery_id(mut self, id: impl Into<String>) -> Self {
        self.delivery_id = Some(id.into());
        self
    }

    /// Signs the body with `secret`, as Kendo does.
    pub fn sign(self, secret: impl AsRef<[u8]>) -> SignedDelivery {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let event = self.event.unwrap_or_else(|| {
            #[derive(serde::Deserialize)]
            struct Named {
                event: String,
            }
            serde_json::from_slice::<Named>(&self.body).map_or_else(|_| String::new(), |n| n.event)
        });
        let delivery_id = self
            .delivery_id
            .unwrap_or_else(|| format!("dlv_raw_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)));
        SignedDelivery::from_parts(secret, event, delivery_id, self.body)
    }
}

/// The `data` of Kendo's documented example for `event`:
/// `call.uploaded` and `ai.training.completed` get the documented fields
/// with `callId` / `trainingId` set to `call_<event_id>` /
/// `training_<event_id>`; other events an empty object.
pub(crate) fn example_data(event: &str, event_id: &str, created_at: &str) -> Value {
    match event {
        CALL_UPLOADED => json!({
            "callId": format!("call_{event_id}"), "agentId": "agent_1", "agentName": "Sales Agent",
            "userId": "user_1", "teamMemberUserId": "member_1", "duration": 245.5,
            "aiScore": "87", "timestamp": created_at,
        }),
        AI_TRAINING_COMPLETED => json!({
            "trainingId": format!("training_{event_id}"), "agentId": "agent_1",
            "agentName": "Sales Agent", "userId": "user_1", "teamMemberUserId": "member_1",
            "duration": 300, "aiScore": "90", "timestamp": created_at,
        }),
        _ => json!({}),
    }
}

/// The envelope as Kendo sends it, keys in Kendo's order (`id`, `event`,
/// `created_at`, `data`).
pub(crate) fn envelope(event_id: &str, event: &str, created_at: &str, data: Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        id: &'a str,
        event: &'a str,
        created_at: &'a str,
        data: Value,
    }
    let envelope = Envelope {
        id: event_id,
        event,
        created_at,
        data,
    };
    Bytes::from(serde_json::to_vec(&envelope).expect("strings and a JSON value serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, Event, TestDelivery};

    #[test]
    fn example_bodies_parse_as_their_event() {
        for event in [CALL_UPLOADED, AI_TRAINING_COMPLETED, "deal.won"] {
            for is_test in [false, true] {
                let body = TestDelivery::example(event)
                    .event_id("evt_9")
                    .is_test(is_test)
                    .body();
                let delivery = Delivery::parse(body, "dlv", event).unwrap();
                assert_eq!(delivery.event_name(), event);
                assert_eq!(delivery.is_test(), is_test);
                match delivery.event() {
                    Event::CallUploaded(call) => assert_eq!(call.call_id, "call_evt_9"),
                    Event::AiTrainingCompleted(t) => assert_eq!(t.training_id, "training_evt_9"),
                    Event::Other { name, .. } => assert_eq!(name, "deal.won"),
                }
            }
        }
    }

    #[test]
    fn the_envelope_keeps_kendos_key_order() {
        let body = envelope("evt_1", CALL_UPLOADED, "2026-03-05T12:00:00Z", json!({}));
        assert_eq!(
            &body[..],
            br#"{"id":"evt_1","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{}}"#
        );
    }

    #[test]
    fn headers_carry_the_signature_of_the_body() {
        let delivery = SignedDelivery::builder(&b"{}"[..])
            .event("call.uploaded")
            .delivery_id("d1")
            .sign("k");
        let headers = delivery.headers();
        assert_eq!(headers[SIGNATURE_HEADER], sign("k", b"{}").as_str());
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers[EVENT_HEADER], "call.uploaded");
        assert_eq!(headers[DELIVERY_ID_HEADER], "d1");
    }

    #[test]
    fn a_raw_body_names_its_event_from_the_body_and_gets_a_fresh_delivery_id() {
        let body = &br#"{"id":"e","event":"ai.training.completed","data":{}}"#[..];
        let one = SignedDelivery::builder(body).sign("k");
        let two = SignedDelivery::builder(body).sign("k");
        assert_eq!(one.event(), AI_TRAINING_COMPLETED);
        assert_ne!(one.delivery_id(), two.delivery_id());
        assert!(
            one.delivery_id().starts_with("dlv_raw_"),
            "{}",
            one.delivery_id()
        );
        assert_eq!(one.signature(), sign("k", body));
        let not_json = SignedDelivery::builder(&b"not json"[..]).sign("k");
        assert_eq!(not_json.event(), "");
        assert_eq!(not_json.body().as_ref(), b"not json");
    }
}
