//! The whole `KendoWebhookLayer`, called with `tower::ServiceExt::oneshot`
//! on a current-thread runtime, with an arbitrary method, arbitrary header
//! edits, an arbitrary or Kendo-shaped body split into arbitrary frames
//! (possibly ending in an error or trailers), and an inner service that
//! answers a chosen status. The same request is then sent a second time.
//!
//! Invariants (see `common::check`): nothing panics; the inner service is
//! reached at most once per request, only with the exact bytes sent, only
//! when the signature verifies and the body parses; every other answer is a
//! known rejection with its status, its header and one hook call; unverified
//! requests never touch the store. Across the two sends: a delivery the
//! inner service answered 2xx is a duplicate the second time, one it
//! answered non-2xx is processed again, a rejection repeats itself.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use kendo_webhooks::{sign, TestDelivery, DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use libfuzzer_sys::fuzz_target;

use std::time::{Duration, UNIX_EPOCH};

use common::{ChunkedBody, Harness, Replay, SECRET};

#[derive(Debug, Arbitrary)]
enum BodyInput {
    /// A Kendo-shaped body.
    Example {
        /// 0: call.uploaded, 1: ai.training.completed, 2+: `other`.
        event: u8,
        other: String,
        id: String,
        created_at: CreatedAt,
        is_test: bool,
        /// Replace one byte of the signed-shaped body (before signing).
        edit: Option<(u16, u8)>,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum CreatedAt {
    Raw(String),
    /// `2026-03-05T<hour>:<minute>:<second>[.<fraction>]<offset>`, near the
    /// replay clock, in the shapes RFC 3339 allows (and a few it does not).
    Near {
        hour: u8,
        minute: u8,
        second: u8,
        fraction: Option<u32>,
        /// `None`: `Z`; otherwise sign, hours, minutes.
        offset: Option<(bool, u8, u8)>,
        lowercase: bool,
    },
}

impl CreatedAt {
    fn text(&self) -> String {
        match self {
            Self::Raw(raw) => raw.clone(),
            Self::Near {
                hour,
                minute,
                second,
                fraction,
                offset,
                lowercase,
            } => {
                let (t, z) = if *lowercase { ('t', 'z') } else { ('T', 'Z') };
                let mut text = format!(
                    "2026-03-05{t}{:02}:{:02}:{:02}",
                    hour % 25,
                    minute % 61,
                    second % 62
                );
                if let Some(fraction) = fraction {
                    text.push_str(&format!(".{fraction}"));
                }
                match offset {
                    None => text.push(z),
                    Some((east, h, m)) => {
                        let sign = if *east { '+' } else { '-' };
                        text.push_str(&format!("{sign}{:02}:{:02}", h % 25, m % 61));
                    }
                }
                text
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Signature {
    /// The right signature of the body, with or without a prefix, any case.
    Valid {
        prefix: bool,
        upper: bool,
    },
    /// The right signature of other bytes.
    OfOther(Vec<u8>),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0..=5: POST, anything else: `GET`.
    method: u8,
    body: BodyInput,
    signature: Signature,
    /// `X-Kendo-Delivery-Id`; `None` keeps `dlv_1`.
    delivery_id: Option<Vec<u8>>,
    /// `X-Kendo-Event`; `None` names the body's event.
    event_header: Option<Vec<u8>>,
    /// Extra header values (name, value), appended.
    extra: Vec<(u8, Vec<u8>)>,
    /// Cut points of the body frames.
    cuts: Vec<u16>,
    fail_at_end: bool,
    trailers: bool,
    /// 0..=5: 200, 6: 202, 7: 204, 8: 500, 9: 503, else 404.
    inner_status: u8,
    /// A replay window: tolerance in seconds, and the layer's clock as an
    /// offset in seconds from 2026-03-05T12:00:00Z.
    replay: Option<(u16, i16)>,
}

/// 2026-03-05T12:00:00Z.
const KENDO_EXAMPLE_TIME: u64 = 1_772_712_000;

fn extra_name(selector: u8) -> HeaderName {
    match selector % 8 {
        0 => CONTENT_TYPE,
        1 => CONTENT_LENGTH,
        2 => CONTENT_ENCODING,
        3 => SIGNATURE_HEADER,
        4 => DELIVERY_ID_HEADER,
        5 => EVENT_HEADER,
        6 => HeaderName::from_static("x-kendo-signature-256"),
        _ => HeaderName::from_static("x-forwarded-for"),
    }
}

fuzz_target!(|input: Input| {
    let (body, body_event) = match &input.body {
        BodyInput::Example {
            event,
            other,
            id,
            created_at,
            is_test,
            edit,
        } => {
            let name = match event {
                0 => "call.uploaded",
                1 => "ai.training.completed",
                _ => other.as_str(),
            };
            let mut body = TestDelivery::example(name)
                .event_id(id)
                .created_at(&created_at.text())
                .is_test(*is_test)
                .body()
                .to_vec();
            if let Some((at, byte)) = edit {
                let at = usize::from(*at) % body.len();
                body[at] = *byte;
            }
            (body, name.as_bytes().to_vec())
        }
        BodyInput::Raw(bytes) => (bytes.clone(), b"call.uploaded".to_vec()),
    };
    let method = if input.method <= 5 {
        Method::POST
    } else {
        Method::GET
    };
    let signature = match &input.signature {
        Signature::Valid { prefix, upper } => {
            let hex = sign(SECRET, &body);
            let hex = if *upper {
                hex.to_ascii_uppercase()
            } else {
                hex
            };
            if *prefix {
                format!("sha256={hex}").into_bytes()
            } else {
                hex.into_bytes()
            }
        }
        Signature::OfOther(other) => sign(SECRET, other).into_bytes(),
        Signature::Raw(raw) => raw.clone(),
    };
    let inner_status = match input.inner_status {
        0..=5 => StatusCode::OK,
        6 => StatusCode::ACCEPTED,
        7 => StatusCode::NO_CONTENT,
        8 => StatusCode::INTERNAL_SERVER_ERROR,
        9 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::NOT_FOUND,
    };

    let mut headers = HeaderMap::new();
    let mut put = |name: HeaderName, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    };
    put(CONTENT_TYPE, b"application/json");
    put(SIGNATURE_HEADER, &signature);
    put(
        DELIVERY_ID_HEADER,
        input.delivery_id.as_deref().unwrap_or(b"dlv_1"),
    );
    put(
        EVENT_HEADER,
        input.event_header.as_deref().unwrap_or(&body_event),
    );
    for (name, value) in &input.extra {
        put(extra_name(*name), value);
    }

    let replay = input.replay.map(|(tolerance, offset)| {
        let example = UNIX_EPOCH + Duration::from_secs(KENDO_EXAMPLE_TIME);
        let shift = Duration::from_secs(u64::from(offset.unsigned_abs()));
        Replay {
            tolerance: Duration::from_secs(u64::from(tolerance)),
            now: if offset >= 0 {
                example + shift
            } else {
                example - shift
            },
        }
    });
    let harness = Harness::new(replay);
    harness.set_inner_status(inner_status);
    let send = |harness: &Harness| {
        let chunks = ChunkedBody::split(&body, &input.cuts, input.fail_at_end, input.trailers);
        let mut request = Request::new(chunks);
        *request.method_mut() = method.clone();
        *request.headers_mut() = headers.clone();
        let outcome = harness.send(request);
        let rejection = common::check(
            harness.replay(),
            &method,
            &headers,
            &body,
            input.fail_at_end,
            inner_status,
            &outcome,
        );
        (outcome, rejection)
    };

    let (_, first) = send(&harness);
    let (second_outcome, second) = send(&harness);
    match first {
        None if inner_status.is_success() => assert!(
            second.is_none() && second_outcome.duplicate && second_outcome.reached.is_empty(),
            "the second copy of an accepted delivery is answered as a duplicate"
        ),
        None => assert_eq!(second, None, "a failed delivery was not processed again"),
        Some(reason) => assert_eq!(second, Some(reason), "a rejection did not repeat itself"),
    }
});
