//! The verified [`Delivery`] and its typed [`Event`].
//!
//! The envelope (`id`, `event`, `created_at`, `data`) is parsed strictly: a
//! body without it is not a Kendo delivery. The event's `data` is parsed
//! leniently: every field but the event's own id is optional, and a field of
//! an unexpected type reads as `None` instead of failing the delivery, so a
//! change on Kendo's side never turns into lost events. Unknown event names
//! arrive as [`Event::Other`] with their raw `data`. Two things still reject
//! a signed body as [`Rejection::MalformedEnvelope`], since no reading of it
//! is safe: a key repeated within the envelope or a known event's `data`,
//! and a number beyond the range of `f64` (such as `1e400`).
//!
//! ```
//! use kendo_webhooks::{Delivery, Event};
//!
//! let body = br#"{"id":"evt_123","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z",
//!   "data":{"callId":"abc","agentName":"Sales Agent","duration":245.5,"aiScore":"87"}}"#;
//! let delivery = Delivery::parse(body.to_vec(), "dlv_1", "call.uploaded")?;
//! match delivery.event() {
//!     Event::CallUploaded(call) => {
//!         assert_eq!(call.call_id, "abc");
//!         assert_eq!(call.ai_score, Some(87.0));
//!         assert_eq!(call.duration, Some(245.5));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), kendo_webhooks::Rejection>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::drift::{schema_drift_of, FieldDrift};
use crate::payload::{Event, TypedData};
use crate::reject::Rejection;

/// One verified Kendo delivery: ids, event name, typed event and raw body.
///
/// The layer puts it in the request extensions before calling your service.
/// Cloning is cheap (one reference count).
#[derive(Debug, Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The ids, event name and `created_at`, one after the other: one
    /// allocation instead of four.
    text: Box<str>,
    event_id: Range<usize>,
    delivery_id: Range<usize>,
    event_name: Range<usize>,
    created_at: Range<usize>,
    is_test: bool,
    event: Event,
    body: Bytes,
    secret_label: Option<Arc<str>>,
    /// [`Delivery::schema_drift`], computed on first use: the metrics, the
    /// span and the hooks of one request share it.
    drift: OnceLock<Vec<FieldDrift>>,
}

impl Delivery {
    /// Parses a body whose signature you **already checked**, with the
    /// delivery id and event name from the `X-Kendo-Delivery-Id` and
    /// `X-Kendo-Event` headers. It does not verify anything: to verify and
    /// parse in one step, use
    /// [`Verifier::verify_delivery`](crate::Verifier::verify_delivery).
    ///
    /// For pipelines that verify on receipt, queue the raw body and parse it
    /// later. The body's `event` is authoritative (it is signed); the header
    /// must agree with it unless `data._isTest` is `true`.
    ///
    /// # Errors
    ///
    /// [`Rejection::MalformedEnvelope`], [`Rejection::EventMismatch`] or
    /// [`Rejection::MissingObjectId`].
    pub fn parse(
        body: impl Into<Bytes>,
        delivery_id: &str,
        event_header: &str,
    ) -> Result<Self, Rejection> {
        Self::parse_verified(body.into(), delivery_id, event_header, None)
    }

    pub(crate) fn parse_verified(
        body: Bytes,
        delivery_id: &str,
        event_header: &str,
        secret_label: Option<Arc<str>>,
    ) -> Result<Self, Rejection> {
        // One UTF-8 check of the whole body is cheaper than one per string
        // (`from_slice`); a body that is not UTF-8 is not JSON either way.
        let json = std::str::from_utf8(&body).map_err(|_| Rejection::MalformedEnvelope)?;
        let envelope: Envelope<'_> =
            serde_json::from_str(json).map_err(|_| Rejection::MalformedEnvelope)?;
        if envelope.id.is_empty() || envelope.event.is_empty() {
            return Err(Rejection::MalformedEnvelope);
        }
        let event = match envelope.data {
            Data::Typed(event) => event,
            Data::Raw(data) => {
                let data = data.get();
                if !data.starts_with('{') {
                    return Err(Rejection::MalformedEnvelope);
                }
                Event::from_data(&envelope.event, data)?
            }
        };
        event.check_object_id()?;
        let is_test = event.is_test();
        if !is_test && envelope.event != event_header {
            return Err(Rejection::EventMismatch);
        }
        let mut text = String::with_capacity(
            envelope.id.len()
                + delivery_id.len()
                + envelope.event.len()
                + envelope.created_at.len(),
        );
        let mut push = |part: &str| {
            let start = text.len();
            text.push_str(part);
            start..text.len()
        };
        let event_id = push(&envelope.id);
        let delivery_id = push(delivery_id);
        let event_name = push(&envelope.event);
        let created_at = push(&envelope.created_at);
        let inner = Inner {
            text: text.into_boxed_str(),
            event_id,
            delivery_id,
            event_name,
            created_at,
            is_test,
            event,
            secret_label,
            body,
            drift: OnceLock::new(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The event's unique id (`id` in the body, signed and stable across
    /// Kendo's retries).
    #[must_use]
    pub fn event_id(&self) -> &str {
        self.inner.str(&self.inner.event_id)
    }

    /// The delivery's id (`X-Kendo-Delivery-Id`; not covered by the signature).
    #[must_use]
    pub fn delivery_id(&self) -> &str {
        self.inner.str(&self.inner.delivery_id)
    }

    /// The event name from the signed body, e.g. `call.uploaded`.
    #[must_use]
    pub fn event_name(&self) -> &str {
        self.inner.str(&self.inner.event_name)
    }

    /// `created_at` exactly as sent (an ISO 8601 / RFC 3339 timestamp).
    #[must_use]
    pub fn created_at(&self) -> &str {
        self.inner.str(&self.inner.created_at)
    }

    /// `created_at` as a point in time, if it is a valid RFC 3339 timestamp.
    #[must_use]
    pub fn created_at_time(&self) -> Option<SystemTime> {
        parse_timestamp(self.created_at())
    }

    /// Whether this is a test delivery ("Send Test": `data._isTest == true`).
    #[must_use]
    pub fn is_test(&self) -> bool {
        self.inner.is_test
    }

    /// The typed event.
    #[must_use]
    pub fn event(&self) -> &Event {
        &self.inner.event
    }

    /// The raw body exactly as received and verified.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// The label of the secret that verified this delivery; `None` when it
    /// was built with [`Delivery::parse`], which does not verify.
    #[must_use]
    pub fn secret_label(&self) -> Option<&str> {
        self.inner.secret_label.as_deref()
    }

    /// How this delivery's `data` differs from the fields this crate types:
    /// documented fields missing or of another type, then fields it does
    /// not know, by name (at most [`MAX_DRIFTED_FIELDS`](crate::drift::MAX_DRIFTED_FIELDS)).
    /// Empty for events this crate does not type. Computed from the raw body
    /// once, on first call; see the [`drift` module](crate::drift).
    #[must_use]
    pub fn schema_drift(&self) -> &[FieldDrift] {
        self.inner
            .drift
            .get_or_init(|| schema_drift_of(self.event_name(), &self.inner.body))
    }
}

impl Inner {
    fn str(&self, range: &Range<usize>) -> &str {
        &self.text[range.clone()]
    }
}

/// Parses an RFC 3339 timestamp such as `2026-03-05T12:00:00Z`.
pub(crate) fn parse_timestamp(value: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// The envelope, read in one pass: when `event` comes before `data` (as
/// Kendo sends it), `data` is parsed straight into its typed [`Event`];
/// otherwise it is kept raw and parsed once the name is known.
///
/// Strings are borrowed from the body unless they hold escapes. As with a
/// derived `Deserialize`, unknown keys are ignored, a repeated key or a
/// missing one is an error.
struct Envelope<'a> {
    id: Cow<'a, str>,
    event: Cow<'a, str>,
    created_at: Cow<'a, str>,
    data: Data<'a>,
}

enum Data<'a> {
    Typed(Event),
    Raw(&'a RawValue),
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kendo envelope object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        use serde::de::Error;

        fn once<T, E: Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }

        let (mut id, mut event, mut created_at, mut data) = (None, None, None, None);
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "id" => {
                    once(&id, "id")?;
                    id = Some(map.next_value::<Str<'de>>()?.0);
                }
                "event" => {
                    once(&event, "event")?;
                    event = Some(map.next_value::<Str<'de>>()?.0);
                }
                "created_at" => {
                    once(&created_at, "created_at")?;
                    created_at = Some(map.next_value::<Str<'de>>()?.0);
                }
                "data" => {
                    once(&data, "data")?;
                    data = Some(match &event {
                        Some(name) => Data::Typed(map.next_value_seed(TypedData(name))?),
                        None => Data::Raw(map.next_value()?),
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            id: id.ok_or_else(|| A::Error::missing_field("id"))?,
            event: event.ok_or_else(|| A::Error::missing_field("event"))?,
            created_at: created_at.ok_or_else(|| A::Error::missing_field("created_at"))?,
            data: data.ok_or_else(|| A::Error::missing_field("data"))?,
        })
    }
}

/// A string, borrowed from the input when it holds no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }

        d.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{AiTrainingCompleted, CallUploaded};

    fn parse(body: &str, header: &str) -> Result<Delivery, Rejection> {
        Delivery::parse(body.as_bytes().to_vec(), "dlv", header)
    }

    #[test]
    fn documented_call_uploaded_example_parses() {
        let body = r#"{ "id": "evt_123", "event": "call.uploaded", "created_at": "2026-03-05T12:00:00Z",
  "data": { "callId": "abc", "agentId": "agent_1", "agentName": "Sales Agent",
            "userId": "user_1", "teamMemberUserId": "member_1", "duration": 245.5,
            "aiScore": "87", "timestamp": "2026-03-05T12:00:00Z" } }"#;
        let delivery = parse(body, "call.uploaded").unwrap();
        assert_eq!(delivery.event_id(), "evt_123");
        assert!(!delivery.is_test());
        assert_eq!(
            delivery.created_at_time(),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_772_712_000))
        );
        let Event::CallUploaded(call) = delivery.event() else {
            panic!("{:?}", delivery.event())
        };
        assert_eq!(call.agent_name.as_deref(), Some("Sales Agent"));
        assert_eq!(call.team_member_user_id.as_deref(), Some("member_1"));
        assert_eq!(call.ai_score, Some(87.0));
        assert_eq!(call.duration, Some(245.5));
    }

    #[test]
    fn documented_training_example_parses_whole_duration() {
        let body = r#"{ "id": "evt_456", "event": "ai.training.completed", "created_at": "2026-03-05T12:02:00Z",
  "data": { "trainingId": "abc", "agentId": "agent_1", "agentName": "Sales Agent",
            "userId": "user_1", "teamMemberUserId": "member_1", "duration": 300,
            "aiScore": "90", "timestamp": "2026-03-05T12:02:00Z" } }"#;
        let delivery = parse(body, "ai.training.completed").unwrap();
        let Event::AiTrainingCompleted(training) = delivery.event() else {
            panic!("{:?}", delivery.event())
        };
        assert_eq!(training.training_id, "abc");
        assert_eq!(training.duration, Some(300.0));
        assert_eq!(training.ai_score, Some(90.0));
    }

    #[test]
    fn odd_field_types_read_as_none_instead_of_failing() {
        let body = r#"{"id":"e","event":"call.uploaded","created_at":"x",
            "data":{"callId":"c","aiScore":"n/a","duration":"12","agentName":7,"userId":null}}"#;
        let Event::CallUploaded(call) = parse(body, "call.uploaded").unwrap().event().clone()
        else {
            unreachable!()
        };
        assert_eq!(call.ai_score, None);
        assert_eq!(call.duration, Some(12.0));
        assert_eq!(call.agent_name, None);
        assert_eq!(call.user_id, None);
    }

    #[test]
    fn known_event_without_its_id_is_rejected() {
        for body in [
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":42}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":""}}"#,
        ] {
            assert_eq!(
                parse(body, "call.uploaded").unwrap_err(),
                Rejection::MissingObjectId,
                "{body}"
            );
        }
    }

    #[test]
    fn envelope_is_strict() {
        for body in [
            "",
            "[]",
            "null",
            "not json",
            r#"{"event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#,
            r#"{"id":1,"event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":[1]}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":"s"}"#,
            r#"{"id":"","event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#,
            r#"{"id":"e","id":"f","event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c"}} trailing"#,
        ] {
            assert_eq!(
                parse(body, "call.uploaded").unwrap_err(),
                Rejection::MalformedEnvelope,
                "{body}"
            );
        }
    }

    #[test]
    fn header_must_name_the_signed_event_unless_test() {
        let body = r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#;
        assert_eq!(
            parse(body, "ai.training.completed").unwrap_err(),
            Rejection::EventMismatch
        );
        let test = r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c","_isTest":true}}"#;
        let delivery = parse(test, "webhook.test").unwrap();
        assert!(delivery.is_test());
        assert_eq!(delivery.event_name(), "call.uploaded");
    }

    #[test]
    fn unknown_event_keeps_raw_data() {
        let body = r#"{"id":"e","event":"deal.won","created_at":"x","data":{"amount":5}}"#;
        let delivery = parse(body, "deal.won").unwrap();
        assert_eq!(
            delivery.event(),
            &Event::Other {
                name: "deal.won".into(),
                data: serde_json::json!({"amount": 5})
            }
        );
    }

    #[test]
    fn built_payloads_serialise_as_kendo_sends_them_and_parse_back() {
        let call = CallUploaded::builder("c_1")
            .agent_name("Ada")
            .ai_score(87.0)
            .duration(245.5)
            .is_test(true)
            .build();
        let data = serde_json::to_value(&call).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"callId": "c_1", "agentName": "Ada", "aiScore": "87", "duration": 245.5, "_isTest": true})
        );
        let parsed: CallUploaded = serde_json::from_value(data).unwrap();
        assert_eq!(parsed, call);

        let training = AiTrainingCompleted::builder("t_1").user_id("u").build();
        let data = serde_json::to_value(&training).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"trainingId": "t_1", "userId": "u"})
        );
        assert_eq!(
            serde_json::from_value::<AiTrainingCompleted>(data).unwrap(),
            training
        );
    }

    #[test]
    fn data_before_or_after_the_event_name_parses_alike() {
        let data = r#""data":{"callId":"c","aiScore":"87","duration":3,"_isTest":false,"x":[1]}"#;
        let event_first =
            format!(r#"{{"id":"e","event":"call.uploaded","created_at":"t",{data}}}"#);
        let data_first = format!(r#"{{{data},"created_at":"t","event":"call.uploaded","id":"e"}}"#);
        let a = parse(&event_first, "call.uploaded").unwrap();
        let b = parse(&data_first, "call.uploaded").unwrap();
        assert_eq!(a.event(), b.event());
        for d in [&a, &b] {
            assert_eq!(
                (
                    d.event_id(),
                    d.delivery_id(),
                    d.event_name(),
                    d.created_at()
                ),
                ("e", "dlv", "call.uploaded", "t")
            );
        }
        for other in [
            r#"{"id":"e","event":"deal.won","created_at":"t","data":{"a":{"b":[1,2]}}}"#,
            r#"{"data":{"a":{"b":[1,2]}},"id":"e","event":"deal.won","created_at":"t"}"#,
        ] {
            assert_eq!(
                parse(other, "deal.won").unwrap().event(),
                &Event::Other {
                    name: "deal.won".into(),
                    data: serde_json::json!({"a": {"b": [1, 2]}})
                }
            );
        }
    }

    #[test]
    fn envelope_is_strict_in_either_order() {
        for body in [
            r#"["e","call.uploaded","x",{"callId":"c"}]"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":[1]}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":null}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c","callId":"d"}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c"},"data":{}}"#,
            r#"{"data":{"callId":"c"},"id":"e","event":"call.uploaded","event":"x","created_at":"x"}"#,
            r#"{"id":"e","event":"call.uploaded","data":{"callId":"c"}}"#,
            r#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"duration":1e400,"callId":"c"}}"#,
        ] {
            assert_eq!(
                parse(body, "call.uploaded").unwrap_err(),
                Rejection::MalformedEnvelope,
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_malformed() {
        let mut body =
            br#"{"id":"e","event":"call.uploaded","created_at":"x","data":{"callId":"c"}}"#
                .to_vec();
        body[37] = 0xff;
        assert_eq!(
            Delivery::parse(body, "dlv", "call.uploaded").unwrap_err(),
            Rejection::MalformedEnvelope
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = r#"{"id":"evt_\u00e9","event":"call.uploaded","created_at":"x","data":{"callId":"a\"b","agentName":"Jos\u00e9"}}"#;
        let delivery = parse(body, "call.uploaded").unwrap();
        assert_eq!(delivery.event_id(), "evt_é");
        let Event::CallUploaded(call) = delivery.event() else {
            unreachable!()
        };
        assert_eq!(call.call_id, "a\"b");
        assert_eq!(call.agent_name.as_deref(), Some("José"));
    }
}
