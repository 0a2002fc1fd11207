//! Property tests (proptest) of the layer's two promises:
//!
//! - **Integrity**: any single-byte change to a signed body (replaced,
//!   inserted or deleted byte) or to its `X-Kendo-Signature` header is
//!   rejected with 401 and never reaches the inner service; the only
//!   single-byte changes accepted are letter-case swaps in the header, which
//!   the contract allows (hex of either case, `sha256=` prefix of any case).
//!   Sent through a real axum server over loopback HTTP.
//! - **Exactly once, whatever the framing**: a valid delivery whose body
//!   arrives split into arbitrary frames (empty ones, one byte each, with or
//!   without trailers) reaches the inner service once with the exact bytes;
//!   the same delivery again is answered 200 as a duplicate without calling
//!   the inner service. Driven with `oneshot` and a body type of this file,
//!   since a real HTTP stack re-frames bodies as it likes.
//!
//! Case counts are modest (`PROPTEST_CASES` overrides them).

use kendo_test_support::delivery_server as common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeKey, DedupeStore, StoreFuture};
use kendo_webhooks::{
    sign, Delivery, KendoWebhookLayer, SignedDelivery, TestDelivery, SIGNATURE_HEADER,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use tower::{Layer, ServiceExt};

use common::{Server, SECRET};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 128;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A Kendo-shaped body: one of the two documented events or an unknown one,
/// any event id, test or not.
fn kendo_body() -> impl Strategy<Value = (&'static str, Bytes)> {
    (
        prop::sample::select(vec!["call.uploaded", "ai.training.completed", "deal.won"]),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(event, id, is_test)| {
            let body = TestDelivery::example(event)
                .event_id(format!("evt_{id}"))
                .created_at("2026-03-05T12:00:00Z")
                .is_test(is_test)
                .body();
            (event, body)
        })
}

/// A unique delivery id per case, so cases never see each other's claims.
fn next_delivery_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("dlv_prop_{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

#[derive(Debug, Clone)]
enum ByteChange {
    /// XOR the byte at the index with a non-zero value.
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| ByteChange::Replace(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteChange::Insert(i, b)),
        any::<Index>().prop_map(ByteChange::Delete),
    ]
}

fn apply(change: &ByteChange, bytes: &[u8]) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    match change {
        ByteChange::Replace(at, x) => changed[at.index(bytes.len())] ^= x,
        ByteChange::Insert(at, byte) => changed.insert(at.index(bytes.len() + 1), *byte),
        ByteChange::Delete(at) => {
            changed.remove(at.index(bytes.len()));
        }
    }
    changed
}

#[test]
fn any_single_byte_change_to_the_body_is_rejected_before_the_inner_service() {
    let runtime = multi_thread_runtime();
    let server = runtime.block_on(Server::start(|builder| builder));
    let client = runtime.block_on(async { common::client() });

    let result = runner().run(&(kendo_body(), byte_change()), |((event, body), change)| {
        let changed = apply(&change, &body);
        prop_assert_ne!(&changed[..], &body[..]);
        let signed = SignedDelivery::builder(body.clone())
            .event(event)
            .delivery_id(next_delivery_id())
            .sign(SECRET);
        let mut request = signed.request(&server.url()).expect("valid request");
        *request.body_mut() = Full::new(Bytes::from(changed));

        let calls_before = server.sink.calls();
        let answer = runtime.block_on(common::send(&client, request));
        prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer);
        prop_assert_eq!(answer.reason(), Some("invalid_signature"));
        prop_assert_eq!(
            server.sink.calls(),
            calls_before,
            "a changed body reached the inner service"
        );
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    assert_eq!(server.sink.calls(), 0);
    assert_eq!(
        server.store.touches(),
        0,
        "a forged body touched the de-dup store"
    );
}

/// A header value byte: visible ASCII, space, or obs-text (what HTTP carries).
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff]
}

#[test]
fn any_single_byte_change_to_the_signature_header_is_rejected_unless_it_only_changes_case() {
    let runtime = multi_thread_runtime();
    let server = runtime.block_on(Server::start(|builder| builder));
    let client = runtime.block_on(async { common::client() });
    let accepted_case_swaps = AtomicUsize::new(0);

    let strategy = (kendo_body(), any::<bool>(), any::<Index>(), header_byte());
    let result = runner().run(&strategy, |((event, body), prefixed, at, byte)| {
        let signature = sign(SECRET, &body);
        let original = if prefixed {
            format!("sha256={signature}")
        } else {
            signature
        };
        let mut changed = original.clone().into_bytes();
        let at = at.index(changed.len());
        prop_assume!(changed[at] != byte);
        let case_swap = changed[at].eq_ignore_ascii_case(&byte);
        changed[at] = byte;

        let signed = SignedDelivery::builder(body.clone())
            .event(event)
            .delivery_id(next_delivery_id())
            .sign(SECRET);
        let mut request = signed.request(&server.url()).expect("valid request");
        let value = HeaderValue::from_bytes(&changed).expect("a header byte keeps the value valid");
        request.headers_mut().insert(SIGNATURE_HEADER, value);

        let calls_before = server.sink.calls();
        let answer = runtime.block_on(common::send(&client, request));
        if case_swap {
            // `a` ↔ `A` in a hex digit or the prefix: the same signature.
            prop_assert_eq!(answer.status, StatusCode::OK, "{:?}", answer);
            prop_assert_eq!(server.sink.calls(), calls_before + 1);
            accepted_case_swaps.fetch_add(1, Ordering::SeqCst);
        } else {
            prop_assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{:?} for {:?}",
                answer,
                String::from_utf8_lossy(&changed)
            );
            let reason = answer.reason().unwrap_or_default();
            prop_assert!(
                reason == "invalid_signature" || reason == "malformed_signature",
                "reason {reason:?}"
            );
            // A hex digit replaced by another one is well formed but wrong.
            let hex_for_hex = original.as_bytes()[at].is_ascii_hexdigit()
                && byte.is_ascii_hexdigit()
                && (!prefixed || at >= "sha256=".len());
            if hex_for_hex {
                prop_assert_eq!(reason, "invalid_signature");
            }
            prop_assert_eq!(
                server.sink.calls(),
                calls_before,
                "a changed signature reached the inner service"
            );
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    assert_eq!(
        server.sink.calls(),
        accepted_case_swaps.load(Ordering::SeqCst),
        "only case swaps may reach the inner service"
    );
}

/// A request body delivered in the given frames, then optional trailers.
struct Frames {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// `body` cut at arbitrary points (empty frames included).
fn frames(body: &Bytes, cuts: &[Index], trailers: bool) -> Frames {
    let mut rest = body.clone();
    let mut chunks = VecDeque::new();
    for cut in cuts {
        let at = cut.index(rest.len() + 1);
        chunks.push_back(rest.split_to(at));
    }
    chunks.push_back(rest);
    let trailers = trailers.then(|| {
        let mut map = HeaderMap::new();
        map.insert("x-trailer", HeaderValue::from_static("end"));
        map
    });
    Frames { chunks, trailers }
}

#[test]
fn a_valid_delivery_passes_exactly_once_whatever_the_framing_of_its_body() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let strategy = (
        kendo_body(),
        prop::collection::vec(any::<Index>(), 0..12),
        any::<bool>(),
        any::<bool>(),
    );
    let result = runner().run(
        &strategy,
        |((event, body), cuts, trailers, one_byte_frames)| {
            let seen = Arc::new(std::sync::Mutex::new(Vec::<(Delivery, Bytes)>::new()));
            let recorder = Arc::clone(&seen);
            let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
                let recorder = Arc::clone(&recorder);
                async move {
                    let delivery = request
                        .extensions()
                        .get::<Delivery>()
                        .cloned()
                        .expect("a Delivery");
                    let bytes = request.into_body().collect().await?.to_bytes();
                    recorder.lock().unwrap().push((delivery, bytes));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"processed"))))
                }
            });
            let layer = KendoWebhookLayer::new(SECRET).expect("valid secret");
            let signed = SignedDelivery::builder(body.clone())
                .event(event)
                .delivery_id(next_delivery_id())
                .sign(SECRET);
            let send = |frames: Frames| {
                let mut request = Request::new(frames);
                *request.method_mut() = http::Method::POST;
                *request.headers_mut() = signed.headers();
                let response = runtime
                    .block_on(layer.layer(inner.clone()).oneshot(request))
                    .unwrap_or_else(|never| match never {});
                let status = response.status();
                let reason = response.headers().get("x-kendo-webhook-rejection").cloned();
                let duplicate = response.headers().get("x-kendo-webhook-duplicate").cloned();
                let text = runtime
                    .block_on(response.into_body().collect())
                    .unwrap_or_else(|never| match never {})
                    .to_bytes();
                (status, reason, duplicate, text)
            };
            let make_frames = || {
                if one_byte_frames {
                    let mut split = frames(&body, &[], trailers);
                    split.chunks = body.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
                    split
                } else {
                    frames(&body, &cuts, trailers)
                }
            };

            let (status, reason, duplicate, text) = send(make_frames());
            prop_assert_eq!(status, StatusCode::OK, "{:?} {:?}", reason, text);
            prop_assert_eq!(reason, None);
            prop_assert_eq!(duplicate, None);
            prop_assert_eq!(&text[..], b"processed");
            {
                let seen = seen.lock().unwrap();
                prop_assert_eq!(seen.len(), 1, "inner called {} times", seen.len());
                prop_assert_eq!(&seen[0].1, &body, "inner read other bytes than were signed");
                prop_assert_eq!(seen[0].0.body(), &body);
                prop_assert_eq!(seen[0].0.event_name(), event);
            }

            // The same delivery again, framed another way: a duplicate.
            let (status, reason, duplicate, text) = send(frames(&body, &[], false));
            prop_assert_eq!(status, StatusCode::OK);
            prop_assert_eq!(reason, None, "a duplicate is not a rejection");
            prop_assert_eq!(duplicate.as_ref().map(|v| v.as_bytes()), Some(&b"true"[..]));
            prop_assert!(text.is_empty(), "a duplicate answered with a body");
            prop_assert_eq!(
                seen.lock().unwrap().len(),
                1,
                "a duplicate reached the inner service"
            );
            Ok(())
        },
    );
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// A [`MemoryStore`](kendo_webhooks::MemoryStore) that records every key
/// outside the [`DedupeStore`] contract ("Keys are at most 256 visible ASCII
/// characters").
#[derive(Default)]
struct ContractCheckingStore {
    store: kendo_webhooks::MemoryStore,
    violations: std::sync::Mutex<Vec<String>>,
}

impl ContractCheckingStore {
    fn check(&self, key: &str) {
        let visible = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if key.is_empty() || key.len() > 256 || !visible {
            self.violations.lock().unwrap().push(key.to_owned());
        }
    }
}

impl DedupeStore for ContractCheckingStore {
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
        self.check(key);
        self.store.claim(key, token)
    }

    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.check(key);
        self.store.complete(key, token)
    }

    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.check(key);
        self.store.release(key, token)
    }
}

/// Regression test of a finding of this suite: with `DedupeKey::EventId`
/// the layer used to hand the body's `id` to the store unchecked, although
/// `DedupeStore` promises implementors keys of at most 256 visible ASCII
/// characters (a signed `id` may be any JSON string: spaces, non-ASCII, up
/// to the body limit). Fixed in c325df3: such ids become `sha256:<hex>`
/// keys. Whatever the event id, the store only ever sees conforming keys.
#[test]
fn with_the_event_id_as_key_the_store_only_sees_keys_within_its_contract() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let event_id = prop_oneof![
        prop::collection::vec(any::<char>(), 1..40).prop_map(String::from_iter),
        (257usize..600).prop_map(|n| "e".repeat(n)),
    ];
    let result = runner().run(&event_id, |event_id| {
        let store = Arc::new(ContractCheckingStore::default());
        let layer = KendoWebhookLayer::builder()
            .secret(SECRET)
            .dedupe_key(DedupeKey::EventId)
            .dedupe_store(Arc::clone(&store))
            .build()
            .expect("valid layer");
        let inner = tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let body = TestDelivery::example("call.uploaded")
            .event_id(&event_id)
            .created_at("2026-03-05T12:00:00Z")
            .body();
        let signed = SignedDelivery::builder(body)
            .event("call.uploaded")
            .delivery_id(next_delivery_id())
            .sign(SECRET);
        let request = signed.request("/").expect("valid request");
        let response = runtime
            .block_on(layer.layer(inner).oneshot(request))
            .unwrap_or_else(|never| match never {});
        let violations = store.violations.lock().unwrap().clone();
        prop_assert!(
            violations.is_empty(),
            "event id {:?} ({} bytes) reached the store as a key outside its contract; answered {}",
            event_id,
            event_id.len(),
            response.status()
        );
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
