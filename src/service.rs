//! [`KendoWebhook`]: the pipeline from an untrusted request to a verified,
//! de-duplicated, typed [`Delivery`] handed to the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::dedupe::{Claim, ClaimToken, DedupeStore};
use crate::event::Delivery;
use crate::layer::{Config, StoreErrorPolicy};
use crate::reject::{Rejected, Rejection};
use crate::signature::{parse_signature, TAG_LEN};
use crate::trace;

/// `X-Kendo-Signature`: HMAC-SHA256 of the raw body, hex.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-kendo-signature");
/// `X-Kendo-Event`: the event name.
pub const EVENT_HEADER: HeaderName = HeaderName::from_static("x-kendo-event");
/// `X-Kendo-Delivery-Id`: unique per delivery, repeated on Kendo's retries.
pub const DELIVERY_ID_HEADER: HeaderName = HeaderName::from_static("x-kendo-delivery-id");
/// Set on every response the layer answers itself, holding
/// [`Rejection::as_str`], so a sender's logs show why without reading bodies.
pub const REJECTION_HEADER: HeaderName = HeaderName::from_static("x-kendo-webhook-rejection");

/// Longest delivery id or event name accepted.
const MAX_ID_LEN: usize = 256;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Middleware that verifies, de-duplicates and types Kendo webhook
/// deliveries; see [`KendoWebhookLayer`](crate::KendoWebhookLayer).
///
/// The inner service is called only for new, verified deliveries, with the
/// raw body as a [`Full<Bytes>`] and the [`Delivery`] in the request
/// extensions. Everything else is answered here with the status of its
/// [`Rejection`]. Reading the body needs a tokio runtime (for the deadline).
pub struct KendoWebhook<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> KendoWebhook<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S: Clone> Clone for KendoWebhook<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for KendoWebhook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KendoWebhook")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KendoWebhook<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes into the future; a fresh clone stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let future = trace::instrument(handle(config, inner, req));
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

type BoxResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// Response future for [`KendoWebhook`].
pub struct ResponseFuture<B, E> {
    inner: BoxResponseFuture<B, E>,
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What is known about the request so far, for the hook.
#[derive(Clone, Copy)]
struct Seen<'a> {
    headers: &'a HeaderMap,
    delivery: Option<&'a Delivery>,
    verified: bool,
}

impl Seen<'_> {
    fn rejected(self, reason: Rejection) -> Rejected {
        let delivery_id = match self.delivery {
            Some(delivery) => Some(delivery.delivery_id()),
            None => single_id(self.headers, &DELIVERY_ID_HEADER).ok(),
        };
        Rejected {
            reason,
            delivery_id: delivery_id.map(str::to_owned),
            event_id: self.delivery.map(|d| d.event_id().to_owned()),
            event_name: self.delivery.map(|d| d.event_name().to_owned()),
            secret_label: self
                .delivery
                .and_then(Delivery::secret_label)
                .map(str::to_owned),
            verified: self.verified,
        }
    }
}

/// The checked Kendo headers of one request.
struct KendoHeaders<'a> {
    tag: [u8; TAG_LEN],
    /// `Content-Length`, when sent (already checked against the limit).
    declared_len: Option<usize>,
    delivery_id: &'a str,
    event: &'a str,
}

async fn handle<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let mut seen = Seen {
        headers: &parts.headers,
        delivery: None,
        verified: false,
    };
    trace::record_delivery_id(&parts.headers);

    let headers = match check_parts(&parts.method, &parts.headers, config.body_limit) {
        Ok(headers) => headers,
        Err(reason) => return Ok(reject(&config, reason, seen)),
    };
    let declared = headers.declared_len;
    let bytes = match read_body(body, config.body_limit, declared, config.read_timeout).await {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(reject(&config, reason, seen)),
    };
    let label = match config.verifier.verify_tag(&headers.tag, &bytes) {
        Ok(label) => Arc::clone(label),
        Err(reason) => return Ok(reject(&config, reason, seen)),
    };
    seen.verified = true;
    let parsed = Delivery::parse_verified(
        bytes.clone(),
        headers.delivery_id,
        headers.event,
        Some(label),
    );
    let delivery = match parsed {
        Ok(delivery) => delivery,
        Err(reason) => return Ok(reject(&config, reason, seen)),
    };
    trace::record_delivery(&delivery);
    seen.delivery = Some(&delivery);
    if let Err(reason) = check_replay_window(&config, &delivery) {
        return Ok(reject(&config, reason, seen));
    }

    let key = config.dedupe_key.key_for(&delivery);
    let mut claim = match config.store.claim(&key).await {
        Ok(Claim::Acquired(token)) => Some(ClaimGuard::new(&config.store, key, token)),
        Ok(Claim::InFlight) => return Ok(reject(&config, Rejection::InFlight, seen)),
        Ok(Claim::Done) => return Ok(reject(&config, Rejection::Duplicate, seen)),
        Err(error) => match config.store_error_policy {
            StoreErrorPolicy::FailOpen => {
                trace::store_error(&error, "processing without de-duplication (fail-open)");
                None
            }
            StoreErrorPolicy::FailClosed => {
                trace::store_error(&error, "answering 503 (fail-closed)");
                return Ok(reject(&config, Rejection::StoreUnavailable, seen));
            }
        },
    };

    parts.extensions.insert(delivery);
    let result = inner
        .call(Request::from_parts(parts, Full::new(bytes)))
        .await;
    let success = matches!(&result, Ok(response) if response.status().is_success());
    trace::record_outcome(match &result {
        Ok(response) if success => trace::Outcome::Accepted(response.status()),
        Ok(response) => trace::Outcome::InnerFailed(response.status()),
        Err(_) => trace::Outcome::InnerError,
    });
    if let Some(claim) = claim.as_mut() {
        claim.settle(success).await;
    }
    result.map(|response| response.map(ResponseBody::service))
}

/// Cheap checks on method and headers, before any byte of the body is read.
fn check_parts<'a>(
    method: &Method,
    headers: &'a HeaderMap,
    body_limit: usize,
) -> Result<KendoHeaders<'a>, Rejection> {
    if method != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    for encoding in headers.get_all(CONTENT_ENCODING) {
        if !encoding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"identity")
        {
            return Err(Rejection::UnsupportedEncoding);
        }
    }
    if !is_json(headers) {
        return Err(Rejection::UnsupportedMediaType);
    }
    let declared_len = match headers.get(CONTENT_LENGTH) {
        None => None,
        Some(length) => match length.to_str().ok().and_then(|l| l.parse::<u64>().ok()) {
            Some(declared) if declared > body_limit as u64 => {
                return Err(Rejection::PayloadTooLarge)
            }
            // At most `body_limit`, so it fits in a usize.
            Some(declared) => usize::try_from(declared).ok(),
            None => return Err(Rejection::BodyReadFailed),
        },
    };
    let tag = match single(headers, &SIGNATURE_HEADER) {
        Single::Missing => return Err(Rejection::MissingSignature),
        Single::Many => return Err(Rejection::MalformedSignature),
        Single::One(value) => parse_signature(value.as_bytes())?,
    };
    let delivery_id = single_id(headers, &DELIVERY_ID_HEADER).map_err(|missing| {
        if missing {
            Rejection::MissingDeliveryId
        } else {
            Rejection::MalformedDeliveryId
        }
    })?;
    let event = single_id(headers, &EVENT_HEADER).map_err(|missing| {
        if missing {
            Rejection::MissingEventHeader
        } else {
            Rejection::MalformedEventHeader
        }
    })?;
    Ok(KendoHeaders {
        tag,
        declared_len,
        delivery_id,
        event,
    })
}

/// `application/json`, any case, parameters such as `; charset=utf-8` allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Single::One(value) = single(headers, &CONTENT_TYPE) else {
        return false;
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
}

enum Single<'a> {
    Missing,
    One(&'a HeaderValue),
    Many,
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Single<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Single::Missing,
        (Some(value), None) => Single::One(value),
        (Some(_), Some(_)) => Single::Many,
    }
}

/// A header holding one id: 1–256 visible ASCII characters, sent once.
/// `Err(true)` when missing, `Err(false)` when malformed.
pub(crate) fn single_id<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, bool> {
    match single(headers, name) {
        Single::Missing => Err(true),
        Single::Many => Err(false),
        Single::One(value) => {
            let bytes = value.as_bytes();
            let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
            if bytes.is_empty() || bytes.len() > MAX_ID_LEN || !visible {
                return Err(false);
            }
            value.to_str().map_err(|_| false)
        }
    }
}

/// Buffers the body, never holding more than `limit` bytes, within `deadline`.
async fn read_body<B>(
    body: B,
    limit: usize,
    declared: Option<usize>,
    deadline: std::time::Duration,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut collect = std::pin::pin!(concatenate(
        Limited::new(body, limit),
        declared.unwrap_or(0)
    ));
    // A small body usually arrives with the headers: when it is complete at
    // the first poll, no deadline timer needs to be armed.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(collected) => collected,
        Poll::Pending => match tokio::time::timeout(deadline, collect).await {
            Ok(collected) => collected,
            Err(_elapsed) => return Err(Rejection::BodyTimeout),
        },
    };
    match collected {
        Err(error) if error.is::<LengthLimitError>() => Err(Rejection::PayloadTooLarge),
        Err(_) => Err(Rejection::BodyReadFailed),
        Ok(bytes) => Ok(bytes),
    }
}

/// Joins the body's data frames. A body of one frame is kept as it is (no
/// copy); several are copied into one buffer as they arrive, so no more than
/// the buffer and one frame are held at once. Trailers are ignored.
async fn concatenate<B>(body: B, size_hint: usize) -> Result<Bytes, B::Error>
where
    B: Body,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue;
        };
        let chunk = data.copy_to_bytes(data.remaining());
        if chunk.is_empty() {
            continue;
        }
        if let Some(joined) = joined.as_mut() {
            joined.extend_from_slice(&chunk);
        } else if let Some(head) = first.take() {
            let mut buffer = BytesMut::with_capacity(size_hint.max(head.len() + chunk.len()));
            buffer.extend_from_slice(&head);
            buffer.extend_from_slice(&chunk);
            joined = Some(buffer);
        } else {
            first = Some(chunk);
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}

fn check_replay_window(config: &Config, delivery: &Delivery) -> Result<(), Rejection> {
    let Some(tolerance) = config.replay_tolerance else {
        return Ok(());
    };
    let created = delivery
        .created_at_time()
        .ok_or(Rejection::OutsideReplayWindow)?;
    let now = (config.clock)();
    let skew = now
        .duration_since(created)
        .or_else(|_| created.duration_since(now))
        .unwrap_or_default();
    if skew > tolerance {
        return Err(Rejection::OutsideReplayWindow);
    }
    Ok(())
}

/// Answers a request the layer will not pass on, and reports why.
fn reject<B>(config: &Config, reason: Rejection, seen: Seen<'_>) -> Response<ResponseBody<B>> {
    trace::record_outcome(trace::Outcome::Rejected(reason));
    if let Some(hook) = &config.on_reject {
        hook(&seen.rejected(reason));
    }
    let text = if reason == Rejection::Duplicate {
        Bytes::new()
    } else {
        Bytes::from_static(reason.response_text().as_bytes())
    };
    let mut response = Response::new(ResponseBody::layer(text));
    *response.status_mut() = reason.status();
    let headers = response.headers_mut();
    headers.insert(REJECTION_HEADER, HeaderValue::from_static(reason.as_str()));
    if reason != Rejection::Duplicate {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    if reason == Rejection::MethodNotAllowed {
        headers.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// A claim that is settled exactly once: explicitly after the inner service
/// answered, or when the request future is dropped.
///
/// Dropped before the inner service answered (client gone, timeout): the key
/// is released, so Kendo's retry is processed. Dropped after a 2xx answer but
/// before the store confirmed: the key is still marked done, since the effect
/// happened.
struct ClaimGuard {
    store: Arc<dyn DedupeStore>,
    key: String,
    token: Option<ClaimToken>,
    inner_succeeded: bool,
}

impl ClaimGuard {
    fn new(store: &Arc<dyn DedupeStore>, key: String, token: ClaimToken) -> Self {
        Self {
            store: Arc::clone(store),
            key,
            token: Some(token),
            inner_succeeded: false,
        }
    }

    async fn settle(&mut self, success: bool) {
        self.inner_succeeded = success;
        let Some(token) = self.token.clone() else {
            return;
        };
        let result = if success {
            self.store.complete(&self.key, token).await
        } else {
            self.store.release(&self.key, token).await
        };
        // Reached only if the store call finished: nothing left for `drop`.
        self.token = None;
        if let Err(error) = result {
            trace::store_error(
                &error,
                "could not settle the claim; it expires with its TTL",
            );
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let store = Arc::clone(&self.store);
        let key = std::mem::take(&mut self.key);
        let complete = self.inner_succeeded;
        let mut settle = Box::pin(async move {
            let result = if complete {
                store.complete(&key, token).await
            } else {
                store.release(&key, token).await
            };
            if let Err(error) = result {
                trace::store_error(
                    &error,
                    "could not settle a dropped claim; it expires with its TTL",
                );
            }
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tokio::runtime::Handle::try_current() {
            // In-memory stores finish at the first poll; others go on as a task.
            Ok(runtime) => {
                if settle.as_mut().poll(&mut cx).is_pending() {
                    runtime.spawn(settle);
                }
            }
            // Outside a runtime (being torn down), a store that needs one may
            // panic: never let that escape a `drop`, which could abort.
            Err(_) => {
                let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    settle.as_mut().poll(&mut cx)
                }));
                if !matches!(poll, Ok(Poll::Ready(()))) {
                    trace::store_error(
                        &crate::dedupe::StoreError::new("no tokio runtime to settle on"),
                        "could not settle a dropped claim; it expires with its TTL",
                    );
                }
            }
        }
    }
}
