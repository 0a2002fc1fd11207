//! axum integration (feature `axum`): [`Delivery`] as an extractor behind
//! the layer, [`VerifiedDelivery`] for verification without it, and
//! [`Rejection`] as a response.
//!
//! This makes `axum-core` 0.5 (axum 0.8) a public dependency of the crate.
//!
//! # Behind the layer (recommended)
//!
//! Put the layer on the webhook's `MethodRouter`, so other routes stay
//! untouched, and take [`Delivery`] in the handler:
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use kendo_webhooks::{Delivery, Event, KendoWebhookLayer};
//!
//! async fn kendo(delivery: Delivery) -> &'static str {
//!     if let Event::CallUploaded(call) = delivery.event() {
//!         println!("call {} scored {:?}", call.call_id, call.ai_score);
//!     }
//!     "ok"
//! }
//!
//! let layer = KendoWebhookLayer::new("whsec_from_kendo")?;
//! let app: Router = Router::new()
//!     .route("/webhooks/kendo", post(kendo).layer(layer))
//!     .route("/health", get(|| async { "ok" }));
//! # Ok::<(), kendo_webhooks::BuildError>(())
//! ```
//!
//! # Without the layer: verify and parse only
//!
//! [`VerifiedDelivery`] verifies the signature and parses the body inside the
//! handler, with a [`Verifier`] taken from the router's state. It does **not**
//! de-duplicate: see its documentation for why that needs the layer.
//!
//! [`Rejection`] implements `IntoResponse` (the same status, header and text
//! as the layer answers), so `?` works in handlers that verify by hand:
//!
//! ```
//! use axum::http::HeaderMap;
//! use axum::{body::Bytes, extract::State, routing::post, Router};
//! use kendo_webhooks::{Rejection, Verifier};
//!
//! async fn kendo(
//!     State(verifier): State<Verifier>,
//!     headers: HeaderMap,
//!     body: Bytes,
//! ) -> Result<&'static str, Rejection> {
//!     let header = |name| headers.get(name).map(|v| v.as_bytes()).unwrap_or_default();
//!     let delivery = verifier.verify_delivery(
//!         header("x-kendo-signature"),
//!         std::str::from_utf8(header("x-kendo-delivery-id")).unwrap_or_default(),
//!         std::str::from_utf8(header("x-kendo-event")).unwrap_or_default(),
//!         body,
//!     )?;
//!     println!("{} {}", delivery.event_name(), delivery.event_id());
//!     Ok("ok")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/webhooks/kendo", post(kendo))
//!     .with_state(Verifier::new(["whsec_from_kendo"])?);
//! # Ok::<(), kendo_webhooks::BuildError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use axum_core::body::Body;
use axum_core::extract::{FromRef, FromRequest, FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::event::Delivery;
use crate::layer::{DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT};
use crate::reject::Rejection;
use crate::service::{check_parts, ScannedHeaders};
use crate::signature::Verifier;

/// `Option<Delivery>`: `None` when the route is not behind the layer, for
/// handlers shared between webhook and other routes.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Delivery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Delivery>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Delivery {
    type Rejection = MissingDelivery;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Delivery>()
            .cloned()
            .ok_or(MissingDelivery)
    }
}

/// Rejection of the [`Delivery`] extractor: the route is not behind
/// [`KendoWebhookLayer`](crate::KendoWebhookLayer). Answers 500, since it is
/// a bug in the server, not in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingDelivery;

impl MissingDelivery {
    /// The status answered: 500.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The text answered.
    #[must_use]
    pub fn body_text(&self) -> &'static str {
        "Missing request extension: kendo_webhooks::Delivery was not found. \
         Perhaps you forgot to add KendoWebhookLayer to this route?"
    }
}

impl fmt::Display for MissingDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body_text())
    }
}

impl std::error::Error for MissingDelivery {}

impl IntoResponse for MissingDelivery {
    fn into_response(self) -> Response {
        (self.status(), self.body_text()).into_response()
    }
}

/// The response the layer answers for this rejection: its status, the
/// `x-kendo-webhook-rejection` header ([`REJECTION_HEADER`](crate::REJECTION_HEADER)) and a one-line
/// `text/plain` explanation. A 405 also carries `Allow: POST`, a 503
/// `Retry-After: 1`.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        crate::reject::rejection_response(self, Body::from)
    }
}

/// An extractor that verifies and parses a delivery by itself, without the
/// layer: the signature against the [`Verifier`] in the router's state
/// (through [`FromRef`], so it can be one field of your own state), then the
/// envelope into a [`Delivery`].
///
/// It runs the layer's checks in the layer's order and rejects with the same
/// [`Rejection`] (and response): method, `Content-Encoding`, `Content-Type`,
/// the three Kendo headers, a body read bounded by [`DEFAULT_BODY_LIMIT`]
/// (`Content-Length` first, then while streaming) and
/// [`DEFAULT_READ_TIMEOUT`], the signature, the envelope, then the
/// verifier's replay window when it has one
/// ([`Verifier::with_replay_tolerance`]).
///
/// # It does not de-duplicate
///
/// Kendo retries deliveries and sometimes sends one twice. De-duplicating
/// them safely means *claiming* the delivery before your handler runs and
/// *settling* the claim after it, from the handler's answer: done on a 2xx,
/// released on a failure or when the request is dropped, so Kendo's retry is
/// processed. An extractor runs before the handler and never sees its
/// answer, so it cannot do the second half: claiming here would either lose
/// the event when the handler fails or leave a claim nobody settles. That is
/// what [`KendoWebhookLayer`](crate::KendoWebhookLayer) does around your
/// handler; use it (and take [`Delivery`]) unless your handler is idempotent
/// on [`Delivery::event_id`] by itself, for example because it only inserts
/// into a table with a unique event id.
///
/// ```
/// use axum::extract::FromRef;
/// use axum::{routing::post, Router};
/// use kendo_webhooks::{Verifier, VerifiedDelivery};
///
/// #[derive(Clone)]
/// struct AppState {
///     verifier: Verifier,
///     // ... your database pool, settings
/// }
///
/// // Or `#[derive(FromRef)]` with axum's `macros` feature.
/// impl FromRef<AppState> for Verifier {
///     fn from_ref(state: &AppState) -> Verifier {
///         state.verifier.clone()
///     }
/// }
///
/// async fn kendo(VerifiedDelivery(delivery): VerifiedDelivery) -> &'static str {
///     // Verified, not de-duplicated: insert idempotently on the event id.
///     println!("{} {}", delivery.event_name(), delivery.event_id());
///     "ok"
/// }
///
/// let state = AppState { verifier: Verifier::new(["whsec_from_kendo"])? };
/// let app: Router = Router::new()
///     .route("/webhooks/kendo", post(kendo))
///     .with_state(state);
/// # Ok::<(), kendo_webhooks::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedDelivery(pub Delivery);

impl<S> FromRequest<S> for VerifiedDelivery
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request(req: Request<Body>, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let (parts, body) = req.into_parts();
        // The layer's own checks, in its order, before any body byte is read.
        let scanned = ScannedHeaders::new(&parts.headers);
        let checked = check_parts(&parts.method, &scanned, DEFAULT_BODY_LIMIT)?;
        let limited = Limited::new(body, DEFAULT_BODY_LIMIT);
        let collected = tokio::time::timeout(DEFAULT_READ_TIMEOUT, limited.collect())
            .await
            .map_err(|_elapsed| Rejection::BodyTimeout)?;
        let bytes = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => return Err(Rejection::PayloadTooLarge),
            Err(_) => return Err(Rejection::BodyReadFailed),
        };
        let label = Arc::clone(verifier.verify_tag(&checked.tag, &bytes)?);
        let delivery =
            Delivery::parse_verified(bytes, checked.delivery_id, checked.event, Some(label))?;
        verifier.check_replay_window(&delivery)?;
        Ok(Self(delivery))
    }
}
