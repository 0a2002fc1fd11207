//! `Delivery::parse` against `serde_json::Value` as the reference: whatever
//! it accepts must be a JSON object with a non-empty string `id` and
//! `event`, a string `created_at` and an object `data`, and every accessor
//! must agree with that JSON. Nothing may panic, whatever the bytes.
//!
//! Inputs are either raw bytes or an envelope assembled from arbitrary
//! pieces (so the fuzzer spends its time past the envelope).
#![no_main]

use arbitrary::Arbitrary;
use kendo_webhooks::{Delivery, Event, Rejection, AI_TRAINING_COMPLETED, CALL_UPLOADED};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
enum Body {
    Raw(Vec<u8>),
    Assembled {
        id: String,
        /// 0: call.uploaded, 1: ai.training.completed, 2+: `event_raw`.
        event: u8,
        event_raw: String,
        created_at: String,
        /// JSON text placed inside `data`'s braces, e.g. `"callId":"x"`.
        data_fields: String,
        /// JSON text placed after `data`, before the closing brace.
        tail: String,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    body: Body,
    delivery_id: String,
    /// 0: same as the body's event, 1: `webhook.test`, 2+: `event_header_raw`.
    event_header: u8,
    event_header_raw: String,
}

fn event_name(selector: u8, raw: &str) -> String {
    match selector {
        0 => CALL_UPLOADED.to_owned(),
        1 => AI_TRAINING_COMPLETED.to_owned(),
        _ => raw.to_owned(),
    }
}

fuzz_target!(|input: Input| {
    let (body, body_event) = match input.body {
        Body::Raw(bytes) => (bytes, None),
        Body::Assembled {
            id,
            event,
            event_raw,
            created_at,
            data_fields,
            tail,
        } => {
            let name = event_name(event, &event_raw);
            let text = format!(
                r#"{{"id":{},"event":{},"created_at":{},"data":{{{data_fields}}}{tail}}}"#,
                Value::String(id),
                Value::String(name.clone()),
                Value::String(created_at),
            );
            (text.into_bytes(), Some(name))
        }
    };
    let header = match input.event_header {
        0 => body_event.unwrap_or_else(|| input.event_header_raw.clone()),
        1 => "webhook.test".to_owned(),
        _ => input.event_header_raw.clone(),
    };

    let result = Delivery::parse(body.clone(), &input.delivery_id, &header);
    let reference = serde_json::from_slice::<Value>(&body);

    let delivery = match result {
        Err(reason) => {
            assert!(
                matches!(
                    reason,
                    Rejection::MalformedEnvelope
                        | Rejection::EventMismatch
                        | Rejection::MissingObjectId
                ),
                "parse answered {reason:?}, not an envelope rejection"
            );
            if reason == Rejection::EventMismatch {
                let value = match reference {
                    Ok(value) => value,
                    // See below: numbers in skipped fields are not converted.
                    Err(error) if error.to_string().contains("number out of range") => return,
                    Err(error) => panic!("an event mismatch on a body that is not JSON: {error}"),
                };
                assert_ne!(
                    value["event"],
                    Value::String(header.clone()),
                    "mismatch on equal events"
                );
                assert_ne!(
                    value["data"]["_isTest"],
                    Value::Bool(true),
                    "test deliveries may not mismatch"
                );
            }
            return;
        }
        Ok(delivery) => delivery,
    };

    // Accessors that must agree with the input whatever the reference says.
    assert_eq!(delivery.body().as_ref(), &body[..]);
    assert_eq!(delivery.delivery_id(), input.delivery_id);
    assert!(!delivery.event_id().is_empty());
    assert!(!delivery.event_name().is_empty());
    assert_eq!(delivery.secret_label(), None);
    let _ = delivery.created_at_time();
    if !delivery.is_test() {
        assert_eq!(
            delivery.event_name(),
            header,
            "non-test delivery with another event header"
        );
    }

    let value = match reference {
        Ok(value) => value,
        // The envelope skips unknown fields without converting their numbers,
        // so `1e999` in an ignored field is fine for it and not for `Value`.
        Err(error) if error.to_string().contains("number out of range") => return,
        Err(error) => panic!("accepted a body serde_json rejects: {error}"),
    };
    let object = value.as_object().expect("accepted a non-object body");
    assert_eq!(
        object.get("id").and_then(Value::as_str),
        Some(delivery.event_id())
    );
    assert_eq!(
        object.get("event").and_then(Value::as_str),
        Some(delivery.event_name())
    );
    assert_eq!(
        object.get("created_at").and_then(Value::as_str),
        Some(delivery.created_at())
    );
    let data = object
        .get("data")
        .and_then(Value::as_object)
        .expect("accepted without an object data");
    assert_eq!(
        delivery.is_test(),
        data.get("_isTest") == Some(&Value::Bool(true)),
        "is_test disagrees with data._isTest"
    );
    match delivery.event() {
        Event::CallUploaded(call) => {
            assert_eq!(delivery.event_name(), CALL_UPLOADED);
            assert_eq!(
                data.get("callId").and_then(Value::as_str),
                Some(call.call_id.as_str())
            );
            assert!(!call.call_id.is_empty());
            assert!(call.ai_score.is_none_or(f64::is_finite));
            assert!(call.duration.is_none_or(f64::is_finite));
        }
        Event::AiTrainingCompleted(training) => {
            assert_eq!(delivery.event_name(), AI_TRAINING_COMPLETED);
            assert_eq!(
                data.get("trainingId").and_then(Value::as_str),
                Some(training.training_id.as_str())
            );
            assert!(!training.training_id.is_empty());
            assert!(training.ai_score.is_none_or(f64::is_finite));
            assert!(training.duration.is_none_or(f64::is_finite));
        }
        Event::Other { name, data: raw } => {
            assert_eq!(name, delivery.event_name());
            assert_ne!(name, CALL_UPLOADED);
            assert_ne!(name, AI_TRAINING_COMPLETED);
            assert_eq!(raw, &Value::Object(data.clone()));
        }
        other => panic!("an event variant this target does not know: {other:?}"),
    }
});
