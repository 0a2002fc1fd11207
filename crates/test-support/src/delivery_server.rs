//! Shared pieces of the integration tests: a real axum server around the
//! layer, an inner service that records what reached it, a store wrapper
//! that records whether it was touched, and a real HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, KendoWebhookLayerBuilder, SignedDelivery, TestDelivery,
};
use tokio::sync::Semaphore;

pub const SECRET: &str = "whsec_integration_test";
pub const PATH: &str = "/webhooks/kendo";

/// What the inner service saw and how it behaves.
pub struct Sink {
    /// Number of calls of the inner service.
    pub calls: AtomicUsize,
    /// Every delivery that reached the inner service, with the body it read.
    pub seen: Mutex<Vec<(Delivery, Bytes)>>,
    /// The next this-many calls answer 500.
    pub fail_next: AtomicUsize,
    /// The next this-many calls wait for a permit of `gate` before answering.
    pub block_next: AtomicUsize,
    /// Permits released by the test to let blocked calls finish.
    pub gate: Semaphore,
}

impl Default for Sink {
    fn default() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            block_next: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        }
    }
}

impl Sink {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(d, _)| d.clone())
            .collect()
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn inner(
    State(sink): State<Arc<Sink>>,
    Extension(delivery): Extension<Delivery>,
    body: Bytes,
) -> StatusCode {
    sink.calls.fetch_add(1, Ordering::SeqCst);
    if take_one(&sink.block_next) {
        sink.gate.acquire().await.expect("gate open").forget();
    }
    sink.seen.lock().unwrap().push((delivery, body));
    if take_one(&sink.fail_next) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// The router of the tests: `POST /webhooks/kendo` behind `layer`.
pub fn app(layer: KendoWebhookLayer, sink: Arc<Sink>) -> Router {
    Router::new()
        .route(PATH, post(inner))
        .layer(layer)
        .with_state(sink)
}

/// A [`MemoryStore`] that counts how often it is touched.
#[derive(Default)]
pub struct CountingStore {
    pub store: MemoryStore,
    pub claims: AtomicUsize,
    pub completes: AtomicUsize,
    pub releases: AtomicUsize,
}

impl CountingStore {
    pub fn touches(&self) -> usize {
        self.claims.load(Ordering::SeqCst)
            + self.completes.load(Ordering::SeqCst)
            + self.releases.load(Ordering::SeqCst)
    }
}

impl DedupeStore for CountingStore {
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.store.claim(key, token)
    }
    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.store.complete(key, token)
    }
    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.store.release(key, token)
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub sink: Arc<Sink>,
    pub store: Arc<CountingStore>,
}

impl Server {
    /// Starts a server with the default layer configuration plus `configure`.
    pub async fn start(
        configure: impl FnOnce(KendoWebhookLayerBuilder) -> KendoWebhookLayerBuilder,
    ) -> Self {
        let store = Arc::new(CountingStore::default());
        let builder = KendoWebhookLayer::builder()
            .secret(SECRET)
            .dedupe_store(Arc::clone(&store));
        let layer = configure(builder).build().expect("valid layer");
        let sink = Arc::new(Sink::default());
        let addr = serve(app(layer, Arc::clone(&sink))).await;
        Self { addr, sink, store }
    }

    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }
}

/// Serves `router` on a free loopback port until the test ends.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("server runs");
    });
    addr
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The layer's rejection reason header, if any.
    pub fn reason(&self) -> Option<&str> {
        self.headers
            .get("x-kendo-webhook-rejection")
            .and_then(|v| v.to_str().ok())
    }

    /// Whether the layer answered "already processed" (its duplicate
    /// header; a 200 that is not a rejection).
    pub fn is_duplicate(&self) -> bool {
        self.headers
            .get("x-kendo-webhook-duplicate")
            .is_some_and(|v| v == "true")
    }
}

pub async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    let response = client
        .request(request)
        .await
        .expect("request reaches the server");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A valid `call.uploaded` delivery with the given ids, signed with [`SECRET`].
pub fn delivery(event_id: &str, delivery_id: &str) -> SignedDelivery {
    let body = TestDelivery::example("call.uploaded")
        .event_id(event_id)
        .created_at("2026-03-05T12:00:00Z")
        .body();
    SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id(delivery_id)
        .sign(SECRET)
}

/// Sends `delivery` to `server` and reads the answer.
pub async fn deliver(client: &HttpClient, server: &Server, delivery: &SignedDelivery) -> Answer {
    send(
        client,
        delivery.request(&server.url()).expect("valid request"),
    )
    .await
}
