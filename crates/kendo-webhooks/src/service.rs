//! [`KendoWebhook`]: the pipeline from an untrusted request to a verified,
//! de-duplicated, typed [`Delivery`] handed to the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use crate::body::{read_body, Reservation, ResponseBody};
use crate::config::Config;
use crate::dedupe::claim::ClaimGuard;
use crate::dedupe::{Claim, StoreError};
use crate::event::Delivery;
use crate::outcome::{Outcome, Report};
use crate::policy::StoreErrorPolicy;
use crate::reject::{rejection_response, Rejection};
use crate::signature::{parse_signature, TAG_LEN};
use crate::trace;

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
        // Boxed before it is instrumented: the span wraps the pointer, so
        // the pipeline's state is moved once, into the box.
        let span = trace::Span::new();
        let future = Box::pin(handle(config, inner, req, span.clone()));
        ResponseFuture {
            inner: span.instrument(future),
        }
    }
}

type BoxResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// Response future for [`KendoWebhook`].
pub struct ResponseFuture<B, E> {
    inner: trace::Instrumented<BoxResponseFuture<B, E>>,
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What is known about the request so far, for the hooks.
#[derive(Clone, Copy)]
struct Seen<'a> {
    /// The delivery id header, if well formed (unverified until `verified`).
    delivery_id: Option<&'a str>,
    delivery: Option<&'a Delivery>,
    verified: bool,
    /// The secret that verified the body, before a `Delivery` carries it
    /// (a verified body that fails to parse is reported with it too).
    secret_label: Option<&'a str>,
    /// The verified raw body (a body that failed to parse is reported with
    /// it too).
    body: Option<&'a Bytes>,
    /// The request's headers, for the hook.
    headers: Option<&'a HeaderMap>,
}

impl<'a> Seen<'a> {
    fn unverified(delivery_id: Option<&'a str>, headers: &'a HeaderMap) -> Self {
        Self {
            delivery_id,
            delivery: None,
            verified: false,
            secret_label: None,
            body: None,
            headers: Some(headers),
        }
    }

    fn delivery(delivery: Option<&'a Delivery>, headers: Option<&'a HeaderMap>) -> Self {
        Self {
            delivery_id: delivery.map(Delivery::delivery_id),
            delivery,
            verified: true,
            secret_label: delivery.and_then(Delivery::secret_label),
            body: delivery.map(Delivery::body),
            headers,
        }
    }

    fn report(self, outcome: Outcome<'a>) -> Report<'a> {
        Report {
            outcome,
            delivery_id: self.delivery_id,
            event_id: self.delivery.map(Delivery::event_id),
            event_name: self.delivery.map(Delivery::event_name),
            secret_label: self.secret_label,
            verified: self.verified,
            response_headers: None,
            response_extensions: None,
            delivery: self.delivery,
            body: self.body,
            request_headers: self.headers,
        }
    }
}

/// Tells everything that reports how a request ended: the span, the
/// metrics, and the hooks. The layer's one reporting path.
fn report(config: &Config, span: &trace::Span, seen: Seen<'_>, outcome: Outcome<'_>) {
    report_answer::<()>(config, span, seen, outcome, None);
}

/// [`report`], with the inner service's response (its headers and
/// extensions) when it answered.
fn report_answer<B>(
    config: &Config,
    span: &trace::Span,
    seen: Seen<'_>,
    outcome: Outcome<'_>,
    response: Option<&Response<B>>,
) {
    span.record_outcome(&outcome);
    #[cfg(feature = "metrics")]
    {
        crate::metrics::record(&outcome);
        if let (Outcome::Accepted { .. }, Some(delivery)) = (&outcome, seen.delivery) {
            crate::metrics::record_drift(delivery);
        }
    }
    if let Some(hook) = &config.on_outcome {
        let mut report = seen.report(outcome);
        report.response_headers = response.map(Response::headers);
        report.response_extensions = response.map(Response::extensions);
        hook(&report);
    }
}

/// The checked Kendo headers of one request.
pub(crate) struct KendoHeaders<'a> {
    pub(crate) tag: [u8; TAG_LEN],
    pub(crate) delivery_id: &'a str,
    pub(crate) event: &'a str,
}

async fn handle<S, ReqBody, ResBody>(
    config: Arc<Config>,
    inner: S,
    req: Request<ReqBody>,
    span: trace::Span,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let scanned = ScannedHeaders::new(&parts.headers);
    // The hooks and the span want the delivery id even when a check fails.
    let mut seen = Seen::unverified(scanned.delivery_id.ok(), &parts.headers);
    span.record_delivery_id(scanned.delivery_id.ok());

    let headers = match check_parts(&parts.method, &scanned, config.body_limit) {
        Ok(headers) => headers,
        Err(reason) => return Ok(reject(&config, &span, reason, seen)),
    };
    let mut reservation = Reservation::new(&config.body_budget);
    let read = read_body(
        body,
        config.body_limit,
        config.read_deadlines,
        &mut reservation,
    );
    let bytes = match read.await {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(reject(&config, &span, reason, seen)),
    };
    let label = match config.verifier.load().verify_tag(&headers.tag, &bytes) {
        Ok(label) => Arc::clone(label),
        Err(reason) => return Ok(reject(&config, &span, reason, seen)),
    };
    seen.verified = true;
    seen.body = Some(&bytes);
    // Only the hooks want it before the `Delivery` exists.
    let label_kept = config.on_outcome.is_some().then(|| Arc::clone(&label));
    seen.secret_label = label_kept.as_deref();
    let parsed = Delivery::parse_verified(
        bytes.clone(),
        headers.delivery_id,
        headers.event,
        Some(label),
    );
    let delivery = match parsed {
        Ok(delivery) => delivery,
        Err(reason) => return Ok(reject(&config, &span, reason, seen)),
    };
    span.record_delivery(&delivery);
    seen.delivery = Some(&delivery);
    seen.secret_label = delivery.secret_label();
    if let Err(reason) = check_replay_window(&config, &delivery) {
        return Ok(reject(&config, &span, reason, seen));
    }

    // Armed before the claim is sent: a request dropped from here on
    // releases whatever claim landed. The key is dropped in this block, so
    // the request's future does not keep a copy of it.
    let mut guard = {
        let key = config.dedupe_key.store_key(&delivery);
        match &config.memory {
            Some(memory) => ClaimGuard::in_memory(memory, key.as_str()),
            None => ClaimGuard::new(&config.store, key),
        }
    };
    let claimed = match guard.claim(config.in_flight_wait).await {
        Ok(Claim::Acquired) => true,
        Ok(Claim::Done) => return Ok(duplicate(&config, &span, seen)),
        Ok(_in_flight) => return Ok(reject(&config, &span, Rejection::InFlight, seen)),
        Err(error) => {
            let policy = config.store_error_policy;
            report_store_error(&config, &span, seen, "claim", &error);
            if policy == StoreErrorPolicy::FailClosed {
                return Ok(reject(&config, &span, Rejection::StoreUnavailable, seen));
            }
            false
        }
    };

    // The hook reports after the delivery moved into the request.
    // Kept for the hook, and for the metrics' schema drift (one reference
    // count).
    let kept = (config.on_outcome.is_some() || cfg!(feature = "metrics")).then(|| delivery.clone());
    // The request's headers move into the inner request too: the hook's
    // copy (a delivery log shows them).
    let kept_headers = config.on_outcome.is_some().then(|| parts.headers.clone());
    let hook_headers = kept_headers.as_ref();
    // The latency is only for the hook and the metrics.
    let started = (cfg!(feature = "metrics") || kept.is_some()).then(Instant::now);
    if !claimed {
        // Gives back (in the background) a claim that may have landed.
        drop(guard);
        let call = call_inner(inner, parts, bytes, delivery);
        return finish(
            &config,
            &span,
            Seen::delivery(kept.as_ref(), hook_headers),
            call.await,
            started,
        );
    }
    let call = call_inner(inner, parts, bytes, delivery);
    let result = if guard.has_lease() {
        let seen = Seen::delivery(kept.as_ref(), hook_headers);
        let on_error =
            |error: &StoreError| report_store_error(&config, &span, seen, "renew", error);
        // Boxed: the renewal timer is not carried by every request.
        Box::pin(guard.renewing(call, on_error)).await
    } else {
        call.await
    };
    let result = finish(
        &config,
        &span,
        Seen::delivery(kept.as_ref(), hook_headers),
        result,
        started,
    );
    let success = matches!(&result, Ok(response) if response.status().is_success());
    if let Err(error) = guard.settle(success).await {
        report_store_error(
            &config,
            &span,
            Seen::delivery(kept.as_ref(), hook_headers),
            "settle",
            &error,
        );
    }
    result
}

fn report_store_error(
    config: &Config,
    span: &trace::Span,
    seen: Seen<'_>,
    operation: &'static str,
    error: &StoreError,
) {
    let policy = config.store_error_policy;
    let outcome = Outcome::StoreFailed {
        operation,
        error,
        policy,
    };
    report(config, span, seen, outcome);
}

/// Hands the verified delivery to the inner service. Not an `async fn`:
/// the service's own future is awaited in place, not moved into another.
fn call_inner<S, ResBody>(
    mut inner: S,
    mut parts: http::request::Parts,
    bytes: Bytes,
    delivery: Delivery,
) -> S::Future
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
{
    parts.extensions.insert(delivery);
    inner.call(Request::from_parts(parts, Full::new(bytes)))
}

/// Reports how the inner service answered and wraps its response.
fn finish<ResBody, E>(
    config: &Config,
    span: &trace::Span,
    seen: Seen<'_>,
    result: Result<Response<ResBody>, E>,
    started: Option<Instant>,
) -> Result<Response<ResponseBody<ResBody>>, E> {
    let latency = started.map(|started| started.elapsed()).unwrap_or_default();
    let outcome = match &result {
        Ok(response) if response.status().is_success() => Outcome::Accepted {
            status: response.status(),
            latency,
        },
        Ok(response) => Outcome::InnerFailed {
            status: Some(response.status()),
            latency,
        },
        Err(_) => Outcome::InnerFailed {
            status: None,
            latency,
        },
    };
    report_answer(config, span, seen, outcome, result.as_ref().ok());
    result.map(|response| response.map(ResponseBody::service))
}

/// The headers the layer reads, found in one pass over the map: cheaper
/// than a hashed lookup for each of them.
pub(crate) struct ScannedHeaders<'a> {
    /// `X-Kendo-Delivery-Id` if well formed; `Err(true)` when missing,
    /// `Err(false)` when malformed (see [`Single::id`]).
    pub(crate) delivery_id: Result<&'a str, bool>,
    event: Single<'a>,
    signature: Single<'a>,
    content_type: Single<'a>,
    /// The first `Content-Length`.
    content_length: Option<&'a HeaderValue>,
    /// Every `Content-Encoding` is `identity`.
    identity: bool,
}

impl<'a> ScannedHeaders<'a> {
    pub(crate) fn new(headers: &'a HeaderMap) -> Self {
        let mut delivery_id = Single::Missing;
        let mut event = Single::Missing;
        let mut signature = Single::Missing;
        let mut content_type = Single::Missing;
        let mut content_length = None;
        let mut identity = true;
        // Every value of every header, repeated names included.
        for (name, value) in headers {
            match name.as_str() {
                "content-type" => content_type.add(value),
                "content-length" => {
                    content_length.get_or_insert(value);
                }
                "content-encoding" => {
                    identity &= value
                        .as_bytes()
                        .trim_ascii()
                        .eq_ignore_ascii_case(b"identity");
                }
                "x-kendo-signature" => signature.add(value),
                "x-kendo-event" => event.add(value),
                "x-kendo-delivery-id" => delivery_id.add(value),
                _ => {}
            }
        }
        Self {
            delivery_id: delivery_id.id(),
            event,
            signature,
            content_type,
            content_length,
            identity,
        }
    }
}

/// Cheap checks on method and headers, before any byte of the body is read
/// (shared with the axum `VerifiedDelivery` extractor).
pub(crate) fn check_parts<'a>(
    method: &Method,
    headers: &ScannedHeaders<'a>,
    body_limit: usize,
) -> Result<KendoHeaders<'a>, Rejection> {
    if method != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    if !headers.identity {
        return Err(Rejection::UnsupportedEncoding);
    }
    if !is_json(headers.content_type) {
        return Err(Rejection::UnsupportedMediaType);
    }
    // A declared length is checked against the limit only: the budget is
    // charged for the bytes that arrive.
    if let Some(length) = headers.content_length {
        match length.to_str().ok().and_then(|l| l.parse::<u64>().ok()) {
            Some(declared) if declared > body_limit as u64 => {
                return Err(Rejection::PayloadTooLarge)
            }
            Some(_) => {}
            None => return Err(Rejection::BodyReadFailed),
        }
    }
    let tag = match headers.signature {
        Single::Missing => return Err(Rejection::MissingSignature),
        Single::Many => return Err(Rejection::MalformedSignature),
        Single::One(value) => parse_signature(value.as_bytes())?,
    };
    let delivery_id = headers.delivery_id.map_err(|missing| {
        if missing {
            Rejection::MissingDeliveryId
        } else {
            Rejection::MalformedDeliveryId
        }
    })?;
    let event = headers.event.id().map_err(|missing| {
        if missing {
            Rejection::MissingEventHeader
        } else {
            Rejection::MalformedEventHeader
        }
    })?;
    Ok(KendoHeaders {
        tag,
        delivery_id,
        event,
    })
}

/// `application/json`, any case, parameters such as `; charset=utf-8` allowed.
fn is_json(content_type: Single<'_>) -> bool {
    let Single::One(value) = content_type else {
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

/// A header that must be sent once.
#[derive(Clone, Copy)]
enum Single<'a> {
    Missing,
    One(&'a HeaderValue),
    Many,
}

impl<'a> Single<'a> {
    /// Counts one more value of the header.
    fn add(&mut self, value: &'a HeaderValue) {
        *self = match self {
            Self::Missing => Self::One(value),
            _ => Self::Many,
        };
    }

    /// The value as an id: 1–256 visible ASCII characters, sent once.
    /// `Err(true)` when missing, `Err(false)` when malformed.
    fn id(self) -> Result<&'a str, bool> {
        match self {
            Self::Missing => Err(true),
            Self::Many => Err(false),
            Self::One(value) => {
                let bytes = value.as_bytes();
                // Without an early exit, so it runs a word at a time.
                let visible = bytes
                    .iter()
                    .fold(true, |all, &b| all & (b.wrapping_sub(0x21) < 0x5e));
                if bytes.is_empty() || bytes.len() > MAX_ID_LEN || !visible {
                    return Err(false);
                }
                std::str::from_utf8(bytes).map_err(|_| false)
            }
        }
    }
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
fn reject<B>(
    config: &Config,
    span: &trace::Span,
    reason: Rejection,
    seen: Seen<'_>,
) -> Response<ResponseBody<B>> {
    report(config, span, seen, Outcome::Rejected(reason));
    rejection_response(reason, |text| {
        ResponseBody::layer(Bytes::from_static(text.as_bytes()))
    })
}

/// Answers a delivery that was already processed: 200, so Kendo stops
/// retrying, with an empty body and the duplicate header.
fn duplicate<B>(config: &Config, span: &trace::Span, seen: Seen<'_>) -> Response<ResponseBody<B>> {
    report(config, span, seen, Outcome::Duplicate);
    let mut response = Response::new(ResponseBody::layer(Bytes::new()));
    response.headers_mut().insert(
        crate::headers::DUPLICATE_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
    use http::HeaderName;

    use crate::headers::{DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER};

    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn one_pass_finds_every_header_the_layer_reads() {
        let map = headers(&[
            (CONTENT_TYPE, "application/json"),
            (CONTENT_LENGTH, "12"),
            (CONTENT_ENCODING, " Identity "),
            (SIGNATURE_HEADER, "ab"),
            (EVENT_HEADER, "call.uploaded"),
            (DELIVERY_ID_HEADER, "dlv_1"),
        ]);
        let scanned = ScannedHeaders::new(&map);
        assert_eq!(scanned.delivery_id, Ok("dlv_1"));
        assert_eq!(scanned.event.id(), Ok("call.uploaded"));
        assert!(matches!(scanned.signature, Single::One(v) if v == "ab"));
        assert!(is_json(scanned.content_type));
        assert_eq!(scanned.content_length.unwrap(), "12");
        assert!(scanned.identity);
    }

    #[test]
    fn repeated_headers_are_told_apart_from_single_ones() {
        let map = headers(&[
            (DELIVERY_ID_HEADER, "dlv_1"),
            (DELIVERY_ID_HEADER, "dlv_2"),
            (SIGNATURE_HEADER, "ab"),
            (SIGNATURE_HEADER, "cd"),
            (CONTENT_LENGTH, "12"),
            (CONTENT_LENGTH, "13"),
            (CONTENT_ENCODING, "identity"),
            (CONTENT_ENCODING, "gzip"),
        ]);
        let scanned = ScannedHeaders::new(&map);
        assert_eq!(scanned.delivery_id, Err(false));
        assert!(matches!(scanned.signature, Single::Many));
        assert_eq!(scanned.event.id(), Err(true));
        assert_eq!(scanned.content_length.unwrap(), "12", "the first one");
        assert!(!scanned.identity);
    }

    #[test]
    fn ids_are_one_to_256_visible_ascii_characters() {
        let id = |value: &'static str| {
            let value = HeaderValue::from_static(value);
            Single::One(&value).id().map(str::to_owned)
        };
        assert_eq!(id("!~").as_deref(), Ok("!~"));
        assert_eq!(id(""), Err(false));
        assert_eq!(id("a b"), Err(false));
        assert_eq!(id("a\tb"), Err(false));
        let long = "a".repeat(MAX_ID_LEN + 1);
        let value = HeaderValue::from_str(&long).unwrap();
        assert_eq!(Single::One(&value).id(), Err(false));
        let value = HeaderValue::from_str(&long[1..]).unwrap();
        assert_eq!(Single::One(&value).id(), Ok(&long[1..]));
        let value = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(Single::One(&value).id(), Err(false));
    }
}
