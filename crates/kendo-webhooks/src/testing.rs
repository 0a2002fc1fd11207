//! [`TestDelivery`]: signed deliveries with any field values, for your own
//! tests.
//!
//! ```
//! use axum::{http::StatusCode, routing::post, Extension, Router};
//! use kendo_webhooks::{CallUploaded, Delivery, Event, KendoWebhookLayer, TestDelivery};
//! use tower::ServiceExt; // oneshot
//!
//! async fn kendo(Extension(delivery): Extension<Delivery>) -> StatusCode {
//!     match delivery.event() {
//!         Event::CallUploaded(call) if call.ai_score.is_some_and(|s| s < 50.0) => StatusCode::ACCEPTED,
//!         _ => StatusCode::OK,
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // In your own tests, the body of a `#[tokio::test] async fn`:
//! let app = Router::new().route("/webhooks/kendo", post(kendo).layer(KendoWebhookLayer::new("whsec_test")?));
//! let call = CallUploaded::builder("call_1").ai_score(12.0).build();
//! let request = TestDelivery::new(call)
//!     .event_id("evt_1")
//!     .delivery_id("dlv_1")
//!     .created_at("2026-03-05T12:00:00Z")
//!     .sign("whsec_test")
//!     .request("/webhooks/kendo")?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::ACCEPTED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::Value;

use crate::payload::Event;
use crate::payload::{AI_TRAINING_COMPLETED, CALL_UPLOADED};
use crate::sender::{envelope, example_data, SignedDelivery};

/// A delivery to build for a test: any event, ids, `created_at`, test flag
/// and `data`, signed with the secret you give when turning it into a
/// request.
///
/// Unless set, the event id and delivery id are fresh in this process
/// (`evt_test_<n>`, `dlv_test_<n>`), so deliveries never de-duplicate each
/// other by accident, and `created_at` is the time it was created (so a
/// replay window accepts it). They are fixed at creation: signing the same
/// `TestDelivery` twice gives one delivery twice, as Kendo's retries are.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestDelivery {
    event: String,
    header: Option<String>,
    /// `None`: the documented example's data for the event (it names the
    /// event id, so it is made when the body is).
    data: Option<Value>,
    event_id: String,
    delivery_id: String,
    created_at: String,
    is_test: Option<bool>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TestDelivery {
    /// A delivery of `event`: a [`CallUploaded`](crate::CallUploaded), an
    /// [`AiTrainingCompleted`](crate::AiTrainingCompleted) (see their
    /// builders) or any [`Event`].
    pub fn new(event: impl Into<Event>) -> Self {
        let (name, data) = match event.into() {
            Event::CallUploaded(call) => (CALL_UPLOADED.to_owned(), to_data(&call)),
            Event::AiTrainingCompleted(training) => {
                (AI_TRAINING_COMPLETED.to_owned(), to_data(&training))
            }
            Event::Other { name, data } => (name, data),
        };
        Self::other(name, data)
    }

    /// A delivery of an event named `name` with `data` as sent, for events
    /// this crate does not type, or malformed `data` on purpose.
    pub fn other(name: impl Into<String>, data: Value) -> Self {
        Self::named(name.into(), Some(data))
    }

    /// A delivery of the event named `name` with the data of Kendo's
    /// documented example for it: for `call.uploaded` and
    /// `ai.training.completed` the documented fields (`callId` /
    /// `trainingId` are `call_<event id>` / `training_<event id>`, the
    /// `timestamp` is `created_at`); for other names an empty object.
    pub fn example(name: impl Into<String>) -> Self {
        Self::named(name.into(), None)
    }

    fn named(event: String, data: Option<Value>) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self {
            event,
            header: None,
            data,
            event_id: format!("evt_test_{n}"),
            delivery_id: format!("dlv_test_{n}"),
            created_at: now_rfc3339(),
            is_test: None,
        }
    }

    /// Sets the event `id` in the body (signed, stable across retries).
    pub fn event_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = id.into();
        self
    }

    /// Sets `X-Kendo-Delivery-Id`.
    pub fn delivery_id(mut self, id: impl Into<String>) -> Self {
        self.delivery_id = id.into();
        self
    }

    /// Sets `created_at`, as sent (normally RFC 3339, such as
    /// `2026-03-05T12:00:00Z`; anything else tests the replay window).
    pub fn created_at(mut self, created_at: impl Into<String>) -> Self {
        self.created_at = created_at.into();
        self
    }

    /// Sets or removes `data._isTest`, as "Send Test" deliveries carry it.
    pub fn is_test(mut self, is_test: bool) -> Self {
        self.is_test = Some(is_test);
        self
    }

    /// Replaces the whole `data` object (or value, to test rejections).
    pub fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Sends another `X-Kendo-Event` header than the body's event name
    /// (test deliveries may; others are rejected as `event_mismatch`).
    pub fn event_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// The body: the envelope `{id, event, created_at, data}` as JSON, keys
    /// in Kendo's order.
    #[must_use]
    pub fn body(&self) -> Bytes {
        let mut data = self
            .data
            .clone()
            .unwrap_or_else(|| example_data(&self.event, &self.event_id, &self.created_at));
        if let (Some(is_test), Value::Object(object)) = (self.is_test, &mut data) {
            if is_test {
                object.insert("_isTest".to_owned(), Value::Bool(true));
            } else {
                object.remove("_isTest");
            }
        }
        envelope(&self.event_id, &self.event, &self.created_at, data)
    }

    /// The delivery signed with `secret`: body, signature and headers
    /// (then [`SignedDelivery::request`] for a request).
    pub fn sign(&self, secret: impl AsRef<[u8]>) -> SignedDelivery {
        let header = self.header.as_deref().unwrap_or(&self.event);
        SignedDelivery::from_parts(secret, header, &self.delivery_id, self.body())
    }
}

fn to_data(payload: &impl serde::Serialize) -> Value {
    // Plain structs of strings, numbers and booleans: this cannot fail.
    serde_json::to_value(payload).expect("payloads serialise to JSON")
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AiTrainingCompleted, CallUploaded, Delivery, Verifier};
    use serde_json::json;

    fn verified(delivery: &SignedDelivery) -> Delivery {
        Verifier::new(["k"])
            .unwrap()
            .verify_delivery(
                delivery.signature().as_bytes(),
                delivery.delivery_id(),
                delivery.event(),
                delivery.body().clone(),
            )
            .unwrap()
    }

    #[test]
    fn every_field_given_is_what_the_receiver_sees() {
        let call = CallUploaded::builder("c_9")
            .agent_name("Ada")
            .ai_score(71.0)
            .build();
        let signed = TestDelivery::new(call.clone())
            .event_id("evt_9")
            .delivery_id("dlv_9")
            .created_at("2026-03-05T12:00:00Z")
            .sign("k");
        let delivery = verified(&signed);
        assert_eq!(delivery.event_id(), "evt_9");
        assert_eq!(delivery.delivery_id(), "dlv_9");
        assert_eq!(delivery.created_at(), "2026-03-05T12:00:00Z");
        assert!(!delivery.is_test());
        assert_eq!(delivery.event(), &Event::CallUploaded(call));
    }

    #[test]
    fn the_test_flag_and_another_event_header_are_accepted_together() {
        let training = AiTrainingCompleted::builder("t_1").build();
        let signed = TestDelivery::new(training)
            .is_test(true)
            .event_header("webhook.test")
            .sign("k");
        assert_eq!(signed.event(), "webhook.test");
        let delivery = verified(&signed);
        assert!(delivery.is_test());
        assert_eq!(delivery.event_name(), AI_TRAINING_COMPLETED);
    }

    #[test]
    fn unset_ids_are_fresh_per_delivery_and_created_at_is_now() {
        let base = TestDelivery::other("deal.won", json!({"amount": 5}));
        let (one, retry) = (verified(&base.sign("k")), verified(&base.sign("k")));
        assert_eq!(one.event_id(), retry.event_id());
        assert_eq!(one.delivery_id(), retry.delivery_id());
        let two = verified(&TestDelivery::other("deal.won", json!({})).sign("k"));
        assert_ne!(one.event_id(), two.event_id());
        assert_ne!(one.delivery_id(), two.delivery_id());
        let age = std::time::SystemTime::now()
            .duration_since(one.created_at_time().expect("RFC 3339"))
            .unwrap_or_default();
        assert!(age.as_secs() < 3600, "{age:?}");
    }

    #[test]
    fn replaced_data_can_make_a_delivery_the_receiver_rejects() {
        let signed = TestDelivery::new(CallUploaded::builder("c").build())
            .data(json!({"agentName": "no call id"}))
            .sign("k");
        let rejection = Verifier::new(["k"]).unwrap().verify_delivery(
            signed.signature().as_bytes(),
            signed.delivery_id(),
            signed.event(),
            signed.body().clone(),
        );
        assert_eq!(rejection.unwrap_err(), crate::Rejection::MissingObjectId);
    }
}
