//! Shared by the targets that drive the whole `KendoWebhookLayer`: a
//! recording inner service, a store that counts its calls, a body whose
//! frames arrive in arbitrary chunks, and the invariants every answer of the
//! layer must satisfy whatever the input.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, Outcome as Reported, Rejection, Report, Verifier,
    DELIVERY_ID_HEADER, DUPLICATE_HEADER, EVENT_HEADER, REJECTION_HEADER, SIGNATURE_HEADER,
};
use tower::{Layer, ServiceExt};

/// The secret every delivery is signed with.
pub const SECRET: &str = "whsec_fuzz";
/// A small limit, so the fuzzer reaches the 413 paths cheaply.
pub const BODY_LIMIT: usize = 2048;

/// One current-thread runtime for the whole fuzzing process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// A request body delivered as the given chunks, optionally ending with an
/// error or trailers.
pub struct ChunkedBody {
    pub chunks: VecDeque<Bytes>,
    pub fail_at_end: bool,
    pub trailers: bool,
}

impl ChunkedBody {
    /// `body` split at the given (arbitrary) cut points.
    pub fn split(body: &[u8], cuts: &[u16], fail_at_end: bool, trailers: bool) -> Self {
        let mut chunks = VecDeque::new();
        let mut rest = Bytes::copy_from_slice(body);
        for cut in cuts {
            if rest.is_empty() {
                break;
            }
            let at = usize::from(*cut) % (rest.len() + 1);
            chunks.push_back(rest.split_to(at));
        }
        chunks.push_back(rest);
        Self {
            chunks,
            fail_at_end,
            trailers,
        }
    }
}

#[derive(Debug)]
pub struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the simulated connection broke")
    }
}

impl std::error::Error for BodyFailed {}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.fail_at_end {
            self.fail_at_end = false;
            return Poll::Ready(Some(Err(BodyFailed)));
        }
        if self.trailers {
            self.trailers = false;
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer", http::HeaderValue::from_static("1"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }
}

/// A `MemoryStore` that counts how often it was asked to claim.
pub struct CountingStore {
    pub inner: MemoryStore,
    pub claims: AtomicUsize,
}

impl DedupeStore for CountingStore {
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(key, token)
    }

    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.inner.complete(key, token)
    }

    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.inner.release(key, token)
    }
}

/// What one call of the layer did.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub rejection: Option<String>,
    /// Whether the answer carried `x-kendo-webhook-duplicate: true`.
    pub duplicate: bool,
    pub body: Bytes,
    /// Requests that reached the inner service: its `Delivery` and body.
    pub reached: Reached,
    /// What the layer answered itself, as reported to the `on_outcome`
    /// hook: a rejection (`Some`) or a duplicate (`None`), and whether the
    /// request was verified.
    pub hooked: Vec<(Option<Rejection>, bool)>,
    /// Store claims made for this call.
    pub claims: usize,
}

/// Requests that reached the inner service: its `Delivery` and body.
type Reached = Vec<(Option<Delivery>, Bytes)>;

/// A layer around a recording inner service, with counters.
pub struct Harness {
    layer: KendoWebhookLayer,
    replay: Option<Replay>,
    store: Arc<CountingStore>,
    hooked: Arc<Mutex<Vec<(Option<Rejection>, bool)>>>,
    reached: Arc<Mutex<Reached>>,
    inner_status: Arc<Mutex<StatusCode>>,
}

/// An enabled replay window: its tolerance and the layer's fixed clock.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    pub tolerance: Duration,
    pub now: SystemTime,
}

impl Harness {
    /// A layer with a 64-key store, [`BODY_LIMIT`], optionally a replay window.
    pub fn new(replay: Option<Replay>) -> Self {
        let store = Arc::new(CountingStore {
            inner: MemoryStore::new(64),
            claims: AtomicUsize::new(0),
        });
        let hooked = Arc::new(Mutex::new(Vec::new()));
        let hook = Arc::clone(&hooked);
        let mut builder = KendoWebhookLayer::builder();
        if let Some(Replay { tolerance, now }) = replay {
            builder = builder.replay_tolerance(tolerance).clock(move || now);
        }
        let layer = builder
            .secret(SECRET)
            .body_limit(BODY_LIMIT)
            .dedupe_store(Arc::clone(&store))
            .on_outcome(move |report: &Report<'_>| {
                let answered = match report.outcome() {
                    Reported::Rejected(reason) => Some(*reason),
                    Reported::Duplicate => None,
                    _ => return,
                };
                hook.lock().unwrap().push((answered, report.is_verified()));
            })
            .build()
            .expect("a valid layer");
        Self {
            layer,
            replay,
            store,
            hooked,
            reached: Arc::new(Mutex::new(Vec::new())),
            inner_status: Arc::new(Mutex::new(StatusCode::OK)),
        }
    }

    /// The replay window this harness was built with.
    pub fn replay(&self) -> Option<Replay> {
        self.replay
    }

    /// The status the inner service answers from now on.
    pub fn set_inner_status(&self, status: StatusCode) {
        *self.inner_status.lock().unwrap() = status;
    }

    /// Sends one request through the layer with `oneshot`.
    pub fn send<B>(&self, request: Request<B>) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let reached = Arc::clone(&self.reached);
        let status = *self.inner_status.lock().unwrap();
        let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let reached = Arc::clone(&reached);
            async move {
                let delivery = request.extensions().get::<Delivery>().cloned();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("Full never fails")
                    .to_bytes();
                reached.lock().unwrap().push((delivery, body));
                let mut response = Response::new(Full::new(Bytes::from_static(b"inner")));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        let service = self.layer.layer(inner);
        let claims_before = self.store.claims.load(Ordering::SeqCst);
        let response = runtime()
            .block_on(service.oneshot(request))
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = runtime()
            .block_on(body.collect())
            .unwrap_or_else(|never| match never {})
            .to_bytes();
        Outcome {
            status: parts.status,
            rejection: parts
                .headers
                .get(REJECTION_HEADER)
                .map(|v| v.to_str().expect("rejection names are ASCII").to_owned()),
            duplicate: parts
                .headers
                .get(DUPLICATE_HEADER)
                .is_some_and(|v| v == "true"),
            body,
            reached: std::mem::take(&mut *self.reached.lock().unwrap()),
            hooked: std::mem::take(&mut *self.hooked.lock().unwrap()),
            claims: self.store.claims.load(Ordering::SeqCst) - claims_before,
        }
    }
}

/// Whether `headers` carry exactly one signature header that verifies `body`.
pub fn signature_verifies(headers: &HeaderMap, body: &[u8]) -> bool {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let verifier = Verifier::new([SECRET]).expect("non-empty secret");
    verifier.verify(value.as_bytes(), body).is_ok()
}

/// The invariants of any single answer of the layer. `body` is what the
/// client sent (all chunks); `body_failed` whether its stream ended in an
/// error. Returns the rejection, if the layer refused the request (`None`
/// when the inner service answered, or the layer answered a duplicate:
/// see [`Outcome::duplicate`]).
pub fn check(
    replay: Option<Replay>,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    body_failed: bool,
    inner_status: StatusCode,
    outcome: &Outcome,
) -> Option<Rejection> {
    let verified = signature_verifies(headers, body);
    if !verified {
        assert_eq!(
            outcome.claims, 0,
            "an unverified request touched the de-dup store"
        );
    }
    match outcome.reached.as_slice() {
        [] => {
            // Answered by the layer: exactly one hook call, matching the
            // header and the status.
            let [(answered, hook_verified)] = outcome.hooked.as_slice() else {
                panic!(
                    "rejected with {} hook calls: {outcome:?}",
                    outcome.hooked.len()
                );
            };
            let Some(reason) = answered else {
                // Already processed: 200, empty, its header, no rejection.
                assert!(outcome.duplicate, "a duplicate without its header");
                assert_eq!(outcome.rejection, None, "a duplicate called a rejection");
                assert_eq!(outcome.status, StatusCode::OK);
                assert!(outcome.body.is_empty(), "duplicate answered with a body");
                assert!(verified && *hook_verified, "an unverified duplicate");
                return None;
            };
            assert!(!outcome.duplicate, "a rejection with the duplicate header");
            let name = outcome
                .rejection
                .as_deref()
                .expect("a rejection without its header");
            assert_eq!(reason.as_str(), name);
            assert_eq!(reason.status(), outcome.status, "{reason:?}");
            assert!(Rejection::ALL.contains(reason));
            if *hook_verified {
                assert!(
                    verified,
                    "{reason:?} reported verified for an unverified request"
                );
            }
            match reason {
                Rejection::OutsideReplayWindow => {
                    let replay = replay.expect("a replay rejection without a replay window");
                    assert!(verified, "replay window checked before the signature");
                    let id = headers[DELIVERY_ID_HEADER]
                        .to_str()
                        .expect("checked header");
                    let event = headers[EVENT_HEADER].to_str().expect("checked header");
                    let delivery = Delivery::parse(body.to_vec(), id, event)
                        .expect("replay window checked before parsing");
                    if let Some(created) = delivery.created_at_time() {
                        assert!(
                            skew(created, replay.now) > replay.tolerance,
                            "{:?} is within {:?} of the clock",
                            delivery.created_at(),
                            replay.tolerance
                        );
                    }
                    assert!(!outcome.body.is_empty());
                }
                Rejection::InFlight => assert!(verified),
                _ => assert!(
                    !outcome.body.is_empty(),
                    "{reason:?} answered without a reason"
                ),
            }
            Some(*reason)
        }
        [(delivery, seen_body)] => {
            assert!(
                outcome.hooked.is_empty(),
                "inner called and a rejection reported"
            );
            assert_eq!(
                outcome.rejection, None,
                "inner answer carries a rejection header"
            );
            assert!(
                !outcome.duplicate,
                "inner answer carries the duplicate header"
            );
            assert_eq!(outcome.status, inner_status);
            assert_eq!(&outcome.body[..], b"inner");
            assert_eq!(method, Method::POST, "inner reached by a {method}");
            assert!(
                !body_failed,
                "inner reached although the body stream failed"
            );
            assert!(
                body.len() <= BODY_LIMIT,
                "inner reached with {} bytes",
                body.len()
            );
            assert_eq!(&seen_body[..], body, "inner saw other bytes than were sent");
            assert!(verified, "inner reached without a valid signature");
            assert_eq!(
                outcome.claims, 1,
                "a processed delivery was not claimed exactly once"
            );
            let delivery = delivery.as_ref().expect("inner reached without a Delivery");
            let id = headers[DELIVERY_ID_HEADER]
                .to_str()
                .expect("checked header");
            let event = headers[EVENT_HEADER].to_str().expect("checked header");
            assert_eq!(delivery.delivery_id(), id);
            assert_eq!(delivery.body().as_ref(), body);
            let parsed = Delivery::parse(body.to_vec(), id, event)
                .expect("reached inner but does not parse");
            assert_eq!(parsed.event_id(), delivery.event_id());
            assert_eq!(parsed.event_name(), delivery.event_name());
            assert_eq!(parsed.event(), delivery.event());
            assert_eq!(parsed.is_test(), delivery.is_test());
            assert_eq!(delivery.secret_label(), Some("#1"));
            if let Some(replay) = replay {
                let created = delivery.created_at_time().unwrap_or_else(|| {
                    panic!("{:?} passed the replay window", delivery.created_at())
                });
                assert!(
                    skew(created, replay.now) <= replay.tolerance,
                    "{:?} passed a {:?} window",
                    delivery.created_at(),
                    replay.tolerance
                );
            }
            None
        }
        many => panic!("inner called {} times for one request", many.len()),
    }
}

/// How far apart two points in time are, either way.
fn skew(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}
