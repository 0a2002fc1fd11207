//! Shared by the CRM's tests: an app on `127.0.0.1:0`, a real HTTP client
//! that logs in with the admin token, and bounded waiting.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crm_ingest::app::{self, Running};
use crm_ingest::config::{AppConfig, Database};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::{SignedDelivery, TestDelivery, DUPLICATE_HEADER, REJECTION_HEADER};
use serde_json::Value;

pub const SECRET: &str = "whsec_crm_ingest_test";
pub const TOKEN: &str = "admin-token-for-tests-0123456789";
pub const CREATED_AT: &str = "2026-03-05T12:00:00Z";
/// Upper bound for any single request and for waiting on the worker.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A configuration on a free port of 127.0.0.1 with the test secret and
/// token, on `database`.
pub fn config_on(database: Database) -> AppConfig {
    let mut config = AppConfig::new(SECRET, "unused.sqlite3");
    config.database = database;
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_token = Some(TOKEN.to_owned());
    config
}

/// [`config_on`] a SQLite file.
pub fn config(db: &Path) -> AppConfig {
    config_on(Database::Sqlite(db.to_path_buf()))
}

pub async fn start(config: AppConfig) -> Running {
    app::start(config).await.expect("the app starts")
}

pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("crm.sqlite3");
    (dir, db)
}

/// A real HTTP/1 client.
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn rejection(&self) -> Option<&str> {
        self.headers
            .get(REJECTION_HEADER)
            .and_then(|v| v.to_str().ok())
    }

    /// Whether the layer answered "already processed" (a 200, not a rejection).
    pub fn is_duplicate(&self) -> bool {
        self.headers
            .get(DUPLICATE_HEADER)
            .is_some_and(|v| v == "true")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Http {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .expect("the request is answered");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("the body is read").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("the app answers in time")
    }

    pub async fn deliver(&self, addr: SocketAddr, delivery: &SignedDelivery) -> Reply {
        let uri = format!("http://{addr}/webhooks/kendo");
        self.send(delivery.request(&uri).expect("a valid request"))
            .await
    }

    /// `GET` with an `Authorization` header (or none).
    pub async fn get_with(&self, addr: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
        let mut request = Request::get(format!("http://{addr}{path}"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        self.send(request.body(Full::default()).expect("a valid request"))
            .await
    }

    /// `GET` as the admin.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Reply {
        self.get_with(addr, path, Some(&format!("Bearer {TOKEN}")))
            .await
    }

    pub async fn get_json(&self, addr: SocketAddr, path: &str) -> Value {
        let reply = self.get(addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text());
        reply.json()
    }

    pub async fn array(&self, addr: SocketAddr, path: &str) -> Vec<Value> {
        match self.get_json(addr, path).await {
            Value::Array(items) => items,
            other => panic!("GET {path} is not an array: {other}"),
        }
    }

    /// The admin status with the tables' sizes (`/healthz` shows none).
    pub async fn health(&self, addr: SocketAddr) -> Value {
        self.get_json(addr, "/api/status?tables=1").await
    }
}

/// Probes until `probe` yields a value; at most [`PATIENCE`] and 1,000 probes.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    for _ in 0..1_000 {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Waits until the API at `path` lists `n` rows, and returns them.
pub async fn rows(http: &Http, addr: SocketAddr, path: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} rows in {path}"), || async {
        let rows = http.array(addr, path).await;
        (rows.len() == n).then_some(rows)
    })
    .await
}

/// Waits until the delivery log holds `n` entries for `delivery_id`, and
/// returns them, newest first.
pub async fn log_entries(http: &Http, addr: SocketAddr, delivery_id: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} log entries for {delivery_id}"), || async {
        let entries: Vec<Value> = http
            .array(addr, "/api/deliveries?limit=1000")
            .await
            .into_iter()
            .filter(|e| e["deliveryId"] == delivery_id)
            .collect();
        (entries.len() == n).then_some(entries)
    })
    .await
}

pub fn signed(event: &str, event_id: &str, delivery_id: &str) -> SignedDelivery {
    let body = TestDelivery::example(event)
        .event_id(event_id)
        .created_at(CREATED_AT)
        .body();
    SignedDelivery::builder(body)
        .event(event)
        .delivery_id(delivery_id)
        .sign(SECRET)
}

pub fn test_delivery(event_id: &str, delivery_id: &str) -> SignedDelivery {
    let body = TestDelivery::example("call.uploaded")
        .event_id(event_id)
        .created_at(CREATED_AT)
        .is_test(true)
        .body();
    SignedDelivery::builder(body)
        .event("webhook.test")
        .delivery_id(delivery_id)
        .sign(SECRET)
}

/// A delivery signed with the wrong secret.
pub fn forged(i: usize) -> SignedDelivery {
    SignedDelivery::builder(
        TestDelivery::example("call.uploaded")
            .event_id(format!("evt_forged_{i}"))
            .created_at(CREATED_AT)
            .body(),
    )
    .event("call.uploaded")
    .delivery_id(format!("forged-{i:05}"))
    .sign("not-the-secret")
}

/// A signed-ready `call.uploaded` body of one agent's call with an AI score
/// (as Kendo sends it, a string) and a duration in seconds.
pub fn call_body(
    event_id: &str,
    agent_id: &str,
    agent_name: Option<&str>,
    score: &str,
    duration: u32,
) -> Bytes {
    let body = serde_json::json!({
        "id": event_id,
        "event": "call.uploaded",
        "created_at": CREATED_AT,
        "data": {
            "callId": format!("call_{event_id}"),
            "agentId": agent_id,
            "agentName": agent_name,
            "userId": format!("user_{agent_id}"),
            "teamMemberUserId": "member_sales_emea",
            "duration": duration,
            "aiScore": score,
            "timestamp": CREATED_AT,
        }
    });
    Bytes::from(body.to_string())
}

/// A webhook request without a signature, with `delivery_id`.
pub fn unsigned(addr: SocketAddr, delivery_id: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/webhooks/kendo"))
        .header("content-type", "application/json")
        .header("x-kendo-delivery-id", delivery_id)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a valid request")
}
