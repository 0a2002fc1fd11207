//! The [`Delivery`] extractor for axum handlers (feature `axum`).
//!
//! This makes `axum-core` 0.5 (axum 0.8) a public dependency of the crate.
//!
//! ```
//! use axum::{routing::post, Router};
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
//! let app: Router = Router::new().route("/webhooks/kendo", post(kendo).layer(layer));
//! # Ok::<(), kendo_webhooks::BuildError>(())
//! ```

use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::event::Delivery;

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
