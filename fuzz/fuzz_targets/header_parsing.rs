//! The layer's header checks (method, `Content-Type`, `Content-Encoding`,
//! `Content-Length`, `X-Kendo-Signature`, `X-Kendo-Delivery-Id`,
//! `X-Kendo-Event`), driven through `KendoWebhookLayer` since the parsing
//! functions are private, against a reference model written from DESIGN.md.
//!
//! The body is always a valid signed delivery, so the answer depends only on
//! the headers: when the model finds header violations, the layer must
//! answer one of them; when it finds none, the layer must verify the
//! signature and either reach the inner service or name the single
//! remaining problem (wrong signature, event header mismatch).
#![no_main]

mod common;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use kendo_webhooks::{
    sign, Rejection, TestDelivery, DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER,
};
use libfuzzer_sys::fuzz_target;

use common::{Harness, BODY_LIMIT, SECRET};

#[derive(Debug, Arbitrary)]
enum Name {
    ContentType,
    ContentLength,
    ContentEncoding,
    Signature,
    DeliveryId,
    Event,
    /// Any name, for example a differently cased known one.
    Custom(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    /// The value Kendo would send for this header.
    Canonical,
    /// The canonical value with bytes around it.
    Wrapped(Vec<u8>, Vec<u8>),
    /// The canonical value with one byte replaced.
    Edited(u16, u8),
    /// The canonical value in other letter case.
    Recased(u64),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0..=3: POST, then GET, PUT, `custom`.
    method: u8,
    custom_method: String,
    /// Start from Kendo's four headers (plus `Content-Length`) or from none.
    start_canonical: bool,
    /// Headers appended after the start set (a repeated name adds a value).
    headers: Vec<(Name, Value)>,
    /// Names removed before appending.
    remove: Vec<Name>,
    /// 0: call.uploaded, 1: ai.training.completed, 2+: `deal.won`.
    event: u8,
    is_test: bool,
}

fn event_name(selector: u8) -> &'static str {
    match selector {
        0 => "call.uploaded",
        1 => "ai.training.completed",
        _ => "deal.won",
    }
}

fn header_name(name: &Name) -> Option<HeaderName> {
    Some(match name {
        Name::ContentType => CONTENT_TYPE,
        Name::ContentLength => CONTENT_LENGTH,
        Name::ContentEncoding => CONTENT_ENCODING,
        Name::Signature => SIGNATURE_HEADER,
        Name::DeliveryId => DELIVERY_ID_HEADER,
        Name::Event => EVENT_HEADER,
        Name::Custom(raw) => HeaderName::from_bytes(raw.as_bytes()).ok()?,
    })
}

/// The value Kendo sends for `name`.
fn canonical(name: &HeaderName, body: &[u8], event: &str) -> Vec<u8> {
    if name == CONTENT_TYPE {
        b"application/json".to_vec()
    } else if name == CONTENT_LENGTH {
        body.len().to_string().into_bytes()
    } else if name == CONTENT_ENCODING {
        b"identity".to_vec()
    } else if name == SIGNATURE_HEADER {
        sign(SECRET, body).into_bytes()
    } else if name == DELIVERY_ID_HEADER {
        b"dlv_fuzz_1".to_vec()
    } else if name == EVENT_HEADER {
        event.as_bytes().to_vec()
    } else {
        b"x".to_vec()
    }
}

fn value_bytes(value: &Value, canonical: Vec<u8>) -> Vec<u8> {
    match value {
        Value::Canonical => canonical,
        Value::Wrapped(before, after) => [&before[..], &canonical, &after[..]].concat(),
        Value::Edited(at, byte) => {
            let mut value = canonical;
            if !value.is_empty() {
                let at = usize::from(*at) % value.len();
                value[at] = *byte;
            }
            value
        }
        Value::Recased(mask) => canonical
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if mask >> (i % 64) & 1 == 1 {
                    b.to_ascii_uppercase()
                } else {
                    *b
                }
            })
            .collect(),
        Value::Raw(raw) => raw.clone(),
    }
}

/// A header holding one id: exactly once, 1–256 visible ASCII characters.
fn id_problem(
    headers: &HeaderMap,
    name: &HeaderName,
    missing: Rejection,
    malformed: Rejection,
) -> Option<Rejection> {
    let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    match values.as_slice() {
        [] => Some(missing),
        [one] => {
            let bytes = one.as_bytes();
            let ok = !bytes.is_empty()
                && bytes.len() <= 256
                && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
            (!ok).then_some(malformed)
        }
        _ => Some(malformed),
    }
}

/// Every problem DESIGN.md's "Parts" step finds in this request.
fn header_problems(method: &Method, headers: &HeaderMap) -> Vec<Rejection> {
    let mut problems = Vec::new();
    if method != Method::POST {
        problems.push(Rejection::MethodNotAllowed);
    }
    if headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        problems.push(Rejection::UnsupportedEncoding);
    }
    let content_types: Vec<&HeaderValue> = headers.get_all(CONTENT_TYPE).iter().collect();
    let json = match content_types.as_slice() {
        [one] => {
            let essence = one
                .as_bytes()
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default();
            essence
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/json")
        }
        _ => false,
    };
    if !json {
        problems.push(Rejection::UnsupportedMediaType);
    }
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        match length.to_str().ok().and_then(|l| l.parse::<u64>().ok()) {
            Some(declared) if declared > BODY_LIMIT as u64 => {
                problems.push(Rejection::PayloadTooLarge)
            }
            Some(_) => {}
            None => problems.push(Rejection::BodyReadFailed),
        }
    }
    let signatures: Vec<&HeaderValue> = headers.get_all(SIGNATURE_HEADER).iter().collect();
    match signatures.as_slice() {
        [] => problems.push(Rejection::MissingSignature),
        [one] => {
            let value = one.as_bytes();
            let digits = match value.get(..7) {
                Some(head) if head.eq_ignore_ascii_case(b"sha256=") => &value[7..],
                _ => value,
            };
            if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
                problems.push(Rejection::MalformedSignature);
            }
        }
        _ => problems.push(Rejection::MalformedSignature),
    }
    problems.extend(id_problem(
        headers,
        &DELIVERY_ID_HEADER,
        Rejection::MissingDeliveryId,
        Rejection::MalformedDeliveryId,
    ));
    problems.extend(id_problem(
        headers,
        &EVENT_HEADER,
        Rejection::MissingEventHeader,
        Rejection::MalformedEventHeader,
    ));
    problems
}

fuzz_target!(|input: Input| {
    let event = event_name(input.event);
    let body = TestDelivery::example(event)
        .event_id("evt_fuzz")
        .created_at("2026-03-05T12:00:00Z")
        .is_test(input.is_test)
        .body();
    let method = match input.method % 4 {
        0 => Method::POST,
        1 => Method::GET,
        2 => Method::PUT,
        _ => match Method::from_bytes(input.custom_method.as_bytes()) {
            Ok(method) => method,
            Err(_) => return,
        },
    };

    let mut headers = HeaderMap::new();
    if input.start_canonical {
        for name in [
            CONTENT_TYPE,
            CONTENT_LENGTH,
            SIGNATURE_HEADER,
            EVENT_HEADER,
            DELIVERY_ID_HEADER,
        ] {
            let value = canonical(&name, &body, event);
            headers.insert(
                name,
                HeaderValue::from_bytes(&value).expect("canonical values are valid"),
            );
        }
    }
    for name in &input.remove {
        if let Some(name) = header_name(name) {
            headers.remove(name);
        }
    }
    for (name, value) in &input.headers {
        let Some(name) = header_name(name) else {
            continue;
        };
        let bytes = value_bytes(value, canonical(&name, &body, event));
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        headers.append(name, value);
    }

    let harness = Harness::new(None);
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = method.clone();
    *request.headers_mut() = headers.clone();
    let outcome = harness.send(request);
    let rejection = common::check(
        None,
        &method,
        &headers,
        &body,
        false,
        StatusCode::OK,
        &outcome,
    );

    let problems = header_problems(&method, &headers);
    if !problems.is_empty() {
        let reason = rejection.unwrap_or_else(|| panic!("reached inner despite {problems:?}"));
        assert!(
            problems.contains(&reason),
            "answered {reason:?}, the model found {problems:?}"
        );
        return;
    }
    // Headers are fine: only the signature and the event header can fail.
    let expected = if !common::signature_verifies(&headers, &body) {
        Some(Rejection::InvalidSignature)
    } else if !input.is_test && headers[EVENT_HEADER].as_bytes() != event.as_bytes() {
        Some(Rejection::EventMismatch)
    } else {
        None
    };
    assert_eq!(rejection, expected, "headers {headers:?}");

    // A second copy of an accepted delivery is a duplicate; anything else
    // is rejected the same way again.
    let mut again = Request::new(Full::new(Bytes::clone(&body)));
    *again.method_mut() = method.clone();
    *again.headers_mut() = headers.clone();
    let second = harness.send(again);
    let second_rejection = common::check(
        None,
        &method,
        &headers,
        &body,
        false,
        StatusCode::OK,
        &second,
    );
    match expected {
        None => assert!(
            second_rejection.is_none() && second.duplicate && second.reached.is_empty(),
            "the second copy of an accepted delivery is answered as a duplicate"
        ),
        Some(reason) => assert_eq!(second_rejection, Some(reason)),
    }
});
