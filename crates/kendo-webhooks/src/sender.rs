//! The sending side, exactly as Kendo does it: for your own tests and tools.
//!
//! ```
//! use kendo_webhooks::{example_body, SignedDelivery};
//!
//! let body = example_body("call.uploaded", "evt_1", "2026-03-05T12:00:00Z", false);
//! let delivery = SignedDelivery::new("whsec_test", "call.uploaded", "dlv_1", body);
//! let request = delivery.request("http://127.0.0.1:3000/webhooks/kendo")?;
//! assert_eq!(request.method(), http::Method::POST);
//! assert_eq!(request.headers()["x-kendo-delivery-id"], "dlv_1");
//! assert_eq!(request.headers()["x-kendo-signature"], delivery.signature());
//! # Ok::<(), http::Error>(())
//! ```

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
    /// Signs `body` with `secret`; `event` and `delivery_id` go into the
    /// `X-Kendo-Event` and `X-Kendo-Delivery-Id` headers unchanged.
    pub fn new(
        secret: impl AsRef<[u8]>,
        event: impl Into<String>,
        delivery_id: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        let body = body.into();
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

/// A body shaped like Kendo's documented example for `event`, with the
/// envelope's keys in Kendo's order (`id`, `event`, `created_at`, `data`).
///
/// `call.uploaded` and `ai.training.completed` get the documented `data`
/// with `callId` / `trainingId` set to `call_<event_id>` /
/// `training_<event_id>`; other events get an empty `data`. With `is_test`,
/// `data` carries `"_isTest": true` as "Send Test" deliveries do.
pub fn example_body(event: &str, event_id: &str, created_at: &str, is_test: bool) -> Bytes {
    let mut data = match event {
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
    };
    if is_test {
        data["_isTest"] = Value::Bool(true);
    }
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
    use crate::{Delivery, Event};

    #[test]
    fn example_bodies_parse_as_their_event() {
        for event in [CALL_UPLOADED, AI_TRAINING_COMPLETED, "deal.won"] {
            for is_test in [false, true] {
                let body = example_body(event, "evt_9", "2026-03-05T12:00:00Z", is_test);
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
    fn headers_carry_the_signature_of_the_body() {
        let delivery = SignedDelivery::new("k", "call.uploaded", "d1", &b"{}"[..]);
        let headers = delivery.headers();
        assert_eq!(headers[SIGNATURE_HEADER], sign("k", b"{}").as_str());
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers[EVENT_HEADER], "call.uploaded");
    }
}
