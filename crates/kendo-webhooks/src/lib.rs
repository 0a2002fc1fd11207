//! Receive [Kendo](https://kendo.ai) webhooks safely in any tower-based Rust
//! server (axum, hyper).
//!
//! [`KendoWebhookLayer`] turns an untrusted HTTP request into a verified,
//! de-duplicated, typed [`Delivery`], or answers with a non-2xx status and
//! never calls your service. It:
//!
//! - buffers the **raw** body with a size limit and a read deadline, and
//!   checks `X-Kendo-Signature` (HMAC-SHA256) over those exact bytes in
//!   constant time, against one or more secrets (rotation);
//! - parses the envelope into a typed [`Event`] (`aiScore` as a number,
//!   unknown events kept with their raw `data`);
//! - drops Kendo's duplicate deliveries: a delivery is marked done only after
//!   your service answered 2xx, and released for Kendo's retry when it fails
//!   or the request is dropped;
//! - answers every rejection with a defined status and a stable reason
//!   ([`Rejection`]).
//!
//! # Example
//!
//! ```
//! use axum::{routing::{get, post}, Extension, Router};
//! use kendo_webhooks::{Delivery, Event, KendoWebhookLayer, TestDelivery};
//!
//! async fn kendo(Extension(delivery): Extension<Delivery>) -> &'static str {
//!     match delivery.event() {
//!         Event::CallUploaded(call) => println!("call {} scored {:?}", call.call_id, call.ai_score),
//!         Event::AiTrainingCompleted(t) => println!("training {} done", t.training_id),
//!         other => println!("not handled yet: {other:?}"),
//!     }
//!     "ok" // 2xx: the delivery is done and Kendo's retries are dropped
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = std::env::var("KENDO_WEBHOOK_SECRET")
//!     .map_err(|_| "set KENDO_WEBHOOK_SECRET to the secret from Kendo's webhook settings")?;
//! let app = Router::new()
//!     // On the webhook's route (its `MethodRouter`), not on the whole router:
//!     .route("/webhooks/kendo", post(kendo).layer(KendoWebhookLayer::new(secret)?))
//!     .route("/health", get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Put the layer on the webhook's `MethodRouter` as above, or on a nested
//! router that holds only the webhook. `Router::layer` wraps *every* route
//! of the router and its fallback: a `GET /health` beside the webhook would
//! reach the layer and be answered `405 method_not_allowed`, and unknown
//! paths too. For hyper without a router, dispatch on the path first (the
//! README shows how).
//!
//! With the `axum` feature, [`Delivery`] is itself an extractor.
//!
//! # Testing your endpoint
//!
//! [`TestDelivery`] builds a signed request with any field values (typed
//! payloads from [`CallUploaded::builder`] and
//! [`AiTrainingCompleted::builder`]); [`SignedDelivery`] signs a body you
//! already have, exactly as Kendo sends it:
//!
//! ```
//! use axum::{http::StatusCode, routing::post, Extension, Router};
//! use kendo_webhooks::{Delivery, KendoWebhookLayer, SignedDelivery, TestDelivery};
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let handler = |Extension(d): Extension<Delivery>| async move { d.event_id().to_owned() };
//! let app = Router::new().route("/hook", post(handler).layer(KendoWebhookLayer::new("whsec_test")?));
//!
//! let body = TestDelivery::example("call.uploaded").event_id("evt_1").created_at("2026-03-05T12:00:00Z").body();
//! let delivery = SignedDelivery::builder(body).event("call.uploaded").delivery_id("dlv_1").sign("whsec_test");
//! let first = app.clone().oneshot(delivery.request("/hook")?).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//!
//! // Kendo's retry of the same delivery is answered without calling the handler.
//! let retry = app.clone().oneshot(delivery.request("/hook")?).await?;
//! assert_eq!(retry.status(), StatusCode::OK);
//! assert_eq!(retry.headers()["x-kendo-webhook-duplicate"], "true");
//!
//! // A request signed with another secret never reaches it either.
//! let forged = SignedDelivery::builder(delivery.body().clone()).event("call.uploaded").delivery_id("dlv_2").sign("guess");
//! let forged = app.oneshot(forged.request("/hook")?).await?;
//! assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `axum` | `Delivery` as an axum extractor; `VerifiedDelivery`, which verifies without the layer (no de-duplication); `IntoResponse` for [`Rejection`] |
//! | `tracing` | one span per delivery: delivery id, event id, event name, outcome |
//! | `metrics` | counters and a latency histogram of every outcome through the `metrics` facade |
//!
//! # The other crates
//!
//! | crate | what it adds |
//! |---|---|
//! | `kendo-webhooks-redis` | `RedisStore`: de-duplication shared by several replicas (TLS with `rediss://`) |
//! | `kendo-webhooks-inbox` | a durable inbox on SQLite or PostgreSQL and a worker that hands deliveries to your handler |
//! | `kendo-webhook-cli` | the `kendo-webhook` binary: send, listen, sign and verify deliveries |
//!
//! # Without tower
//!
//! [`Verifier::verify_delivery`] runs the same verification and parsing for
//! pipelines that verify on receipt and process later (or
//! [`Verifier::verify`] and [`Delivery::parse`] separately).
//!
//! # Public dependencies
//!
//! `http` 1, `bytes` 1 and `serde_json` 1 (the raw `data` of unknown events)
//! appear in the public API; with the `axum` feature, `axum-core` 0.5.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
pub mod dedupe;
pub mod drift;
mod error;
mod event;
mod headers;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use crate::metrics::describe_metrics;
mod outcome;
mod payload;
mod policy;
mod reject;
mod sender;
mod service;
mod signature;
pub mod simulate;
mod testing;
mod trace;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
mod axum;

#[cfg(feature = "axum")]
pub use crate::axum::{MissingDelivery, VerifiedDelivery};
pub use crate::body::ResponseBody;
pub use crate::dedupe::{DedupeKey, DedupeStore, MemoryStore};
pub use crate::drift::{DriftKind, FieldDrift};
pub use crate::error::BuildError;
pub use crate::event::Delivery;
pub use crate::headers::{
    DELIVERY_ID_HEADER, DUPLICATE_HEADER, EVENT_HEADER, REJECTION_HEADER, SIGNATURE_HEADER,
};
pub use crate::layer::{
    KendoWebhookLayer, KendoWebhookLayerBuilder, DEFAULT_BODY_BUDGET, DEFAULT_BODY_LIMIT,
    DEFAULT_BODY_START_TIMEOUT, DEFAULT_IN_FLIGHT_WAIT, DEFAULT_MIN_BODY_RATE,
    DEFAULT_READ_TIMEOUT,
};
pub use crate::outcome::{Outcome, Report};
pub use crate::payload::{
    AiTrainingCompleted, AiTrainingCompletedBuilder, CallUploaded, CallUploadedBuilder, Event,
    AI_TRAINING_COMPLETED, CALL_UPLOADED,
};
pub use crate::policy::StoreErrorPolicy;
pub use crate::reject::Rejection;
pub use crate::sender::{SignedDelivery, SignedDeliveryBuilder};
pub use crate::service::{KendoWebhook, ResponseFuture};
pub use crate::signature::{sign, Secret, Verifier};
pub use crate::testing::TestDelivery;
