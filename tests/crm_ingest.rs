//! Integration tests of the `crm_ingest` example app: it runs in-process on
//! `127.0.0.1:0` with a temporary SQLite file, and signed deliveries go to it
//! over real HTTP, as Kendo sends them.

// `main`-only entry points (`run_until`, `from_lookup`'s caller) are unused here.
#[allow(dead_code)]
#[path = "../examples/crm_ingest/app.rs"]
mod app;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use app::config::{AppConfig, ConfigError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::{example_body, SignedDelivery, REJECTION_HEADER};
use serde_json::{json, Value};

const SECRET: &str = "whsec_crm_ingest_test";
const CREATED_AT: &str = "2026-03-05T12:00:00Z";
/// Upper bound for any single request and for waiting on the worker.
const PATIENCE: Duration = Duration::from_secs(10);

/// A configuration on a free port of 127.0.0.1 with the test secret.
fn config(db: &Path) -> AppConfig {
    let mut config = AppConfig::new(SECRET, db);
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

async fn start(config: AppConfig) -> app::Running {
    app::start(config).await.expect("the app starts")
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("crm.sqlite3");
    (dir, db)
}

/// A real HTTP/1 client.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer, fully read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn rejection(&self) -> Option<&str> {
        self.headers
            .get(REJECTION_HEADER)
            .and_then(|v| v.to_str().ok())
    }
}

impl Http {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
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
            .expect("the app answers within 10 s")
    }

    async fn deliver(&self, addr: SocketAddr, delivery: &SignedDelivery) -> Reply {
        let uri = format!("http://{addr}/webhooks/kendo");
        self.send(delivery.request(&uri).expect("a valid request"))
            .await
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Reply {
        let request = Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .expect("a valid request");
        self.send(request).await
    }

    async fn get_json(&self, addr: SocketAddr, path: &str) -> Value {
        let reply = self.get(addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text());
        reply.json()
    }

    async fn array(&self, addr: SocketAddr, path: &str) -> Vec<Value> {
        match self.get_json(addr, path).await {
            Value::Array(items) => items,
            other => panic!("GET {path} is not an array: {other}"),
        }
    }

    async fn counts(&self, addr: SocketAddr) -> Value {
        self.get_json(addr, "/healthz").await["counts"].clone()
    }
}

/// Probes until `probe` yields a value; at most [`PATIENCE`] and 500 probes.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    for _ in 0..500 {
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
async fn rows(http: &Http, addr: SocketAddr, path: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} rows in {path}"), || async {
        let rows = http.array(addr, path).await;
        (rows.len() == n).then_some(rows)
    })
    .await
}

/// Waits until the delivery log holds an entry for `delivery_id`, and
/// returns the entries for it, newest first.
async fn log_entries(http: &Http, addr: SocketAddr, delivery_id: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} log entries for {delivery_id}"), || async {
        let entries: Vec<Value> = http
            .array(addr, "/api/deliveries")
            .await
            .into_iter()
            .filter(|e| e["deliveryId"] == delivery_id)
            .collect();
        (entries.len() == n).then_some(entries)
    })
    .await
}

fn signed(event: &str, event_id: &str, delivery_id: &str) -> SignedDelivery {
    let body = example_body(event, event_id, CREATED_AT, false);
    SignedDelivery::new(SECRET, event, delivery_id, body)
}

fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"));
    // Fixed width (milliseconds, UTC), so the strings sort as times do.
    assert_eq!(text.len(), "2026-03-05T12:00:00.000Z".len(), "{text:?}");
    assert!(text.ends_with('Z'), "{text:?}");
}

#[tokio::test]
async fn known_events_are_projected_with_kendos_field_names_and_types() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let call = signed("call.uploaded", "evt_call_1", "dlv_call_1");
    let reply = http.deliver(app.addr(), &call).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.rejection(), None);
    let training = signed("ai.training.completed", "evt_training_1", "dlv_training_1");
    assert_eq!(
        http.deliver(app.addr(), &training).await.status,
        StatusCode::OK
    );
    // A score Kendo did not send as a number string reads as null.
    let odd = br#"{"id":"evt_call_2","event":"call.uploaded","created_at":"2026-03-05T12:01:00Z",
        "data":{"callId":"c2","agentName":"Night Agent","duration":12,"aiScore":"n/a"}}"#;
    let odd = SignedDelivery::new(SECRET, "call.uploaded", "dlv_call_2", &odd[..]);
    assert_eq!(http.deliver(app.addr(), &odd).await.status, StatusCode::OK);

    let calls = rows(&http, app.addr(), "/api/calls", 2).await;
    let call_keys = [
        "eventId",
        "callId",
        "agentId",
        "agentName",
        "userId",
        "teamMemberUserId",
        "duration",
        "aiScore",
        "timestamp",
        "isTest",
        "receivedAt",
    ];
    for row in &calls {
        assert_eq!(keys(row), call_keys.into_iter().collect(), "{row}");
        assert_timestamp(&row["receivedAt"]);
    }
    let first = calls
        .iter()
        .find(|c| c["eventId"] == "evt_call_1")
        .expect("evt_call_1");
    assert_eq!(first["callId"], "call_evt_call_1");
    assert_eq!(first["agentId"], "agent_1");
    assert_eq!(first["agentName"], "Sales Agent");
    assert_eq!(first["userId"], "user_1");
    assert_eq!(first["teamMemberUserId"], "member_1");
    assert_eq!(first["duration"].as_f64(), Some(245.5));
    assert_eq!(
        first["aiScore"].as_f64(),
        Some(87.0),
        "aiScore is a number: {first}"
    );
    assert_eq!(first["timestamp"], CREATED_AT);
    assert_eq!(first["isTest"], false);
    let second = calls
        .iter()
        .find(|c| c["eventId"] == "evt_call_2")
        .expect("evt_call_2");
    assert_eq!(second["aiScore"], Value::Null);
    assert_eq!(second["duration"].as_f64(), Some(12.0));
    assert_eq!(second["agentId"], Value::Null);

    let trainings = rows(&http, app.addr(), "/api/trainings", 1).await;
    let t = &trainings[0];
    let mut training_keys: BTreeSet<&str> = call_keys.into_iter().collect();
    training_keys.remove("callId");
    training_keys.insert("trainingId");
    assert_eq!(keys(t), training_keys, "{t}");
    assert_eq!(t["eventId"], "evt_training_1");
    assert_eq!(t["trainingId"], "training_evt_training_1");
    assert_eq!(t["agentName"], "Sales Agent");
    assert_eq!(t["duration"].as_f64(), Some(300.0));
    assert_eq!(t["aiScore"].as_f64(), Some(90.0));
    assert_eq!(t["isTest"], false);

    let logged = log_entries(&http, app.addr(), "dlv_call_1", 1).await;
    assert_eq!(
        logged[0],
        json!({
            "deliveryId": "dlv_call_1", "eventId": "evt_call_1", "event": "call.uploaded",
            "outcome": "accepted", "reason": null, "status": 200, "verified": true,
            "secretLabel": "current", "receivedAt": logged[0]["receivedAt"],
        })
    );
    assert_timestamp(&logged[0]["receivedAt"]);
    // Newest first: the last delivery sent heads the log.
    let log = http.array(app.addr(), "/api/deliveries").await;
    let order: Vec<&str> = log
        .iter()
        .filter_map(|e| e["deliveryId"].as_str())
        .collect();
    assert_eq!(order, ["dlv_call_2", "dlv_training_1", "dlv_call_1"]);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_duplicate_gets_200_is_logged_as_duplicate_and_creates_no_second_row() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let call = signed("call.uploaded", "evt_dup", "dlv_dup");
    assert_eq!(http.deliver(app.addr(), &call).await.status, StatusCode::OK);
    rows(&http, app.addr(), "/api/calls", 1).await;

    // Kendo's retry: same delivery id, same body.
    let retry = http.deliver(app.addr(), &call).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.rejection(), Some("duplicate"));
    // A re-send of the same event under a fresh delivery id.
    let resend = signed("call.uploaded", "evt_dup", "dlv_dup_resend");
    let reply = http.deliver(app.addr(), &resend).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.rejection(), Some("duplicate"));

    let entries = log_entries(&http, app.addr(), "dlv_dup", 2).await;
    assert_eq!(entries[0]["outcome"], "duplicate");
    assert_eq!(entries[0]["reason"], "duplicate");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[0]["verified"], true);
    assert_eq!(entries[0]["secretLabel"], "current");
    assert_eq!(entries[0]["eventId"], "evt_dup");
    assert_eq!(entries[1]["outcome"], "accepted");
    let resent = log_entries(&http, app.addr(), "dlv_dup_resend", 1).await;
    assert_eq!(resent[0]["outcome"], "duplicate");

    let counts = http.counts(app.addr()).await;
    assert_eq!(counts["inbox"], 1, "{counts}");
    assert_eq!(http.array(app.addr(), "/api/calls").await.len(), 1);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_tampered_body_gets_401_is_logged_under_its_delivery_id_and_stores_nothing() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let genuine = signed("call.uploaded", "evt_tampered", "dlv_tampered");
    let forged_body = String::from_utf8(genuine.body().to_vec())
        .expect("UTF-8")
        .replace("\"87\"", "\"99\"");
    assert_ne!(forged_body.as_bytes(), genuine.body().as_ref());
    let mut request = genuine.request("http://placeholder/").expect("a request");
    *request.uri_mut() = format!("http://{}/webhooks/kendo", app.addr())
        .parse()
        .expect("a URI");
    *request.body_mut() = Full::new(Bytes::from(forged_body));
    let reply = http.send(request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.rejection(), Some("invalid_signature"));

    let entries = log_entries(&http, app.addr(), "dlv_tampered", 1).await;
    assert_eq!(
        entries[0],
        json!({
            "deliveryId": "dlv_tampered", "eventId": null, "event": null,
            "outcome": "rejected", "reason": "invalid_signature", "status": 401,
            "verified": false, "secretLabel": null, "receivedAt": entries[0]["receivedAt"],
        })
    );
    let counts = http.counts(app.addr()).await;
    assert_eq!(counts["inbox"], 0, "{counts}");
    assert!(http.array(app.addr(), "/api/calls").await.is_empty());
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_test_delivery_is_stored_with_is_test_true() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let body = example_body("call.uploaded", "evt_test", CREATED_AT, true);
    // "Send Test" deliveries may name a test event in the header.
    let test = SignedDelivery::new(SECRET, "webhook.test", "dlv_test", body);
    let reply = http.deliver(app.addr(), &test).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let calls = rows(&http, app.addr(), "/api/calls", 1).await;
    assert_eq!(calls[0]["isTest"], true);
    assert_eq!(calls[0]["eventId"], "evt_test");
    let entries = log_entries(&http, app.addr(), "dlv_test", 1).await;
    assert_eq!(entries[0]["event"], "call.uploaded");
    assert_eq!(entries[0]["outcome"], "accepted");
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unknown_event_gets_200_is_logged_and_creates_no_row() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let unknown = signed("deal.won", "evt_unknown", "dlv_unknown");
    assert_eq!(
        http.deliver(app.addr(), &unknown).await.status,
        StatusCode::OK
    );
    // A known event sent after it: once it is projected, the worker is past
    // the unknown one (it takes the inbox oldest first).
    let after = signed("call.uploaded", "evt_after", "dlv_after");
    assert_eq!(
        http.deliver(app.addr(), &after).await.status,
        StatusCode::OK
    );
    rows(&http, app.addr(), "/api/calls", 1).await;

    let counts = http.counts(app.addr()).await;
    assert_eq!(counts["inbox"], 2, "{counts}");
    assert_eq!(counts["inboxPending"], 0, "{counts}");
    let calls = http.array(app.addr(), "/api/calls").await;
    assert_eq!(calls[0]["eventId"], "evt_after");
    assert!(http.array(app.addr(), "/api/trainings").await.is_empty());
    let entries = log_entries(&http, app.addr(), "dlv_unknown", 1).await;
    assert_eq!(entries[0]["event"], "deal.won");
    assert_eq!(entries[0]["outcome"], "accepted");
    assert_eq!(entries[0]["status"], 200);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_processed_delivery_resent_after_a_restart_gets_200_and_creates_no_second_row() {
    let (_dir, db) = temp_db();
    let http = Http::new();
    let call = signed("call.uploaded", "evt_restart", "dlv_restart");

    let first = start(config(&db)).await;
    assert_eq!(
        http.deliver(first.addr(), &call).await.status,
        StatusCode::OK
    );
    rows(&http, first.addr(), "/api/calls", 1).await;
    first.shutdown().await.expect("clean shutdown");

    // A new process state: the layer's LRU is empty, only the database remains.
    let second = start(config(&db)).await;
    let reply = http.deliver(second.addr(), &call).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.rejection(),
        None,
        "the LRU cannot know it; the inbox does"
    );
    assert!(reply.text().contains("duplicate"), "{}", reply.text());

    let counts = http.counts(second.addr()).await;
    assert_eq!(counts["inbox"], 1, "{counts}");
    assert_eq!(counts["calls"], 1, "{counts}");
    assert_eq!(http.array(second.addr(), "/api/calls").await.len(), 1);
    let entries = log_entries(&http, second.addr(), "dlv_restart", 2).await;
    assert_eq!(entries[0]["outcome"], "duplicate");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(
        entries[1]["outcome"], "accepted",
        "the log survives the restart"
    );
    second.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unprocessed_inbox_rows_are_projected_after_a_restart() {
    let (_dir, db) = temp_db();
    let http = Http::new();

    let mut without_worker = config(&db);
    without_worker.run_worker = false;
    let first = start(without_worker).await;
    let call = signed("call.uploaded", "evt_pending_call", "dlv_pending_call");
    let training = signed(
        "ai.training.completed",
        "evt_pending_training",
        "dlv_pending_training",
    );
    assert_eq!(
        http.deliver(first.addr(), &call).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.deliver(first.addr(), &training).await.status,
        StatusCode::OK
    );
    let counts = http.counts(first.addr()).await;
    assert_eq!(counts["inboxPending"], 2, "{counts}");
    assert!(http.array(first.addr(), "/api/calls").await.is_empty());
    first.shutdown().await.expect("clean shutdown");

    let second = start(config(&db)).await;
    let calls = rows(&http, second.addr(), "/api/calls", 1).await;
    assert_eq!(calls[0]["eventId"], "evt_pending_call");
    let trainings = rows(&http, second.addr(), "/api/trainings", 1).await;
    assert_eq!(trainings[0]["eventId"], "evt_pending_training");
    let counts = http.counts(second.addr()).await;
    assert_eq!(counts["inboxPending"], 0, "{counts}");
    second.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_delivery_in_flight_gets_409_and_shutdown_finishes_the_in_flight_request() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let addr = app.addr();
    let http = Http::new();

    // Hold the database's write lock: the handler's inbox write waits for
    // it (busy timeout 5 s), so the first delivery stays in flight.
    let lock = rusqlite::Connection::open(&db).expect("open the database");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");

    let call = signed("call.uploaded", "evt_in_flight", "dlv_in_flight");
    let (a, b) = (call.clone(), call.clone());
    let client = Http::new();
    let mut first = tokio::spawn(async move { client.deliver(addr, &a).await });
    let client = Http::new();
    let mut second = tokio::spawn(async move { client.deliver(addr, &b).await });
    // Whichever claimed the delivery first is in flight; the other gets 409
    // at once, while the lock is still held.
    let (conflict, in_flight) = tokio::select! {
        reply = &mut first => (reply.expect("first request task"), second),
        reply = &mut second => (reply.expect("second request task"), first),
    };
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.text());
    assert_eq!(conflict.rejection(), Some("in_flight"));

    // Shut down while the first delivery is still in flight, then let it
    // finish: graceful shutdown waits for it and it is answered 200.
    let shutdown = tokio::spawn(app.shutdown());
    lock.execute_batch("COMMIT")
        .expect("release the write lock");
    let finished = in_flight.await.expect("in-flight request task");
    assert_eq!(finished.status, StatusCode::OK, "{}", finished.text());
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown completes")
        .expect("shutdown task")
        .expect("clean shutdown");

    let app = start(config(&db)).await;
    let entries = log_entries(&http, app.addr(), "dlv_in_flight", 2).await;
    let mut seen: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            let reason = e["reason"].as_str().unwrap_or("-").to_owned();
            (
                e["outcome"].as_str().unwrap_or("").to_owned(),
                reason,
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("accepted".to_owned(), "-".to_owned(), 200),
            ("duplicate".to_owned(), "in_flight".to_owned(), 409)
        ]
    );
    rows(&http, app.addr(), "/api/calls", 1).await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_delivery_signed_with_the_previous_secret_is_accepted_and_labelled() {
    let (_dir, db) = temp_db();
    let mut rotated = config(&db);
    rotated.secret = "whsec_new_secret".to_owned();
    rotated.previous_secret = Some(SECRET.to_owned());
    let app = start(rotated).await;
    let http = Http::new();

    let old = signed("call.uploaded", "evt_old_secret", "dlv_old_secret");
    assert_eq!(http.deliver(app.addr(), &old).await.status, StatusCode::OK);
    let body = example_body("call.uploaded", "evt_new_secret", CREATED_AT, false);
    let new = SignedDelivery::new("whsec_new_secret", "call.uploaded", "dlv_new_secret", body);
    assert_eq!(http.deliver(app.addr(), &new).await.status, StatusCode::OK);

    let old = log_entries(&http, app.addr(), "dlv_old_secret", 1).await;
    assert_eq!(old[0]["secretLabel"], "previous");
    let new = log_entries(&http, app.addr(), "dlv_new_secret", 1).await;
    assert_eq!(new[0]["secretLabel"], "current");
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_delivery_log_keeps_only_the_newest_entries() {
    let (_dir, db) = temp_db();
    let mut small = config(&db);
    small.delivery_log_keep = 1_000;
    let app = start(small).await;
    let http = Http::new();

    // A flood of unauthenticated requests, each under its own delivery id.
    let sent = 1_050;
    for i in 0..sent {
        let forged = SignedDelivery::new(
            "not-the-secret",
            "call.uploaded",
            format!("forged-{i:04}"),
            example_body(
                "call.uploaded",
                &format!("evt_forged_{i}"),
                CREATED_AT,
                false,
            ),
        );
        let reply = http.deliver(app.addr(), &forged).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let newest = format!("forged-{:04}", sent - 1);
    let log = eventually("the newest forged delivery in the log", || async {
        let log = http.array(app.addr(), "/api/deliveries").await;
        (log.first()
            .is_some_and(|e| e["deliveryId"] == newest.as_str()))
        .then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1_000);
    let ids: BTreeSet<&str> = log
        .iter()
        .filter_map(|e| e["deliveryId"].as_str())
        .collect();
    let expected: Vec<String> = (sent - 1_000..sent)
        .map(|i| format!("forged-{i:04}"))
        .collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect());
    assert!(log
        .iter()
        .all(|e| e["outcome"] == "rejected" && e["verified"] == false));
    assert_eq!(
        http.get_json(app.addr(), "/healthz").await["droppedLogEntries"],
        0
    );
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn healthz_is_200_while_the_database_answers_and_503_when_it_does_not() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let reply = http.get(app.addr(), "/healthz").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["status"], "ok");

    // Break the database under the running app.
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    conn.execute_batch("DROP TABLE calls")
        .expect("drop a table");
    let reply = http.get(app.addr(), "/healthz").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("calls")),
        "{}",
        reply.text()
    );
    let reply = http.get(app.addr(), "/api/calls").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_dashboard_shows_agents_with_their_names_escaped() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();

    let call = signed("call.uploaded", "evt_dash", "dlv_dash");
    assert_eq!(http.deliver(app.addr(), &call).await.status, StatusCode::OK);
    let hostile = br#"{"id":"evt_hostile","event":"ai.training.completed","created_at":"2026-03-05T12:00:00Z",
        "data":{"trainingId":"t1","agentName":"<script>alert('x')</script> & \"Co\"","aiScore":"42.5"}}"#;
    let hostile = SignedDelivery::new(SECRET, "ai.training.completed", "dlv_hostile", &hostile[..]);
    assert_eq!(
        http.deliver(app.addr(), &hostile).await.status,
        StatusCode::OK
    );
    rows(&http, app.addr(), "/api/calls", 1).await;
    rows(&http, app.addr(), "/api/trainings", 1).await;

    let page = http.get(app.addr(), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.headers[CONTENT_TYPE].to_str().expect("ASCII");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text();
    assert!(
        html.contains("Sales Agent (agent_1)"),
        "the call's agent is shown"
    );
    assert!(html.contains(">87<"), "the call's score is shown");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"),
        "the hostile agent name is shown escaped"
    );
    assert!(!html.contains("<script"), "no markup from deliveries");
    assert!(html.contains("dlv_hostile"), "the delivery log is shown");
    app.shutdown().await.expect("clean shutdown");
}

/// Two replicas with their own databases share one real Redis: a copy of a
/// delivery sent to the second is answered as a duplicate by the layer
/// (Redis knew it) although the second replica's inbox never saw it.
#[cfg(feature = "redis")]
#[tokio::test]
async fn replicas_sharing_redis_answer_a_copy_as_a_duplicate() {
    use kendo_webhooks::dedupe::RedisStore;

    let Some(redis) = redis_server::RedisServer::start_or_skip("crm_ingest replicas") else {
        return;
    };
    let replica = |db: PathBuf| {
        let url = redis.url();
        async move {
            let store = RedisStore::builder(url)
                .namespace("crm-ingest-test")
                .build()
                .await
                .expect("Redis answers");
            let mut config = config(&db);
            config.dedupe_store = Some(Box::new(store));
            start(config).await
        }
    };
    let (_dir_a, db_a) = temp_db();
    let (_dir_b, db_b) = temp_db();
    let a = replica(db_a).await;
    let b = replica(db_b).await;
    let http = Http::new();

    let call = signed("call.uploaded", "evt_replicas", "dlv_replicas");
    let first = http.deliver(a.addr(), &call).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.rejection(), None);
    let copy = http.deliver(b.addr(), &call).await;
    assert_eq!(copy.status, StatusCode::OK);
    assert_eq!(copy.rejection(), Some("duplicate"));

    assert_eq!(http.counts(b.addr()).await["inbox"], 0);
    let entries = log_entries(&http, b.addr(), "dlv_replicas", 1).await;
    assert_eq!(entries[0]["outcome"], "duplicate");
    rows(&http, a.addr(), "/api/calls", 1).await;
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
}

#[test]
fn the_configuration_comes_from_the_environment_with_documented_defaults() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };

    let missing = AppConfig::from_lookup(env(&[("CRM_DB", "x.sqlite3")])).unwrap_err();
    assert_eq!(missing, ConfigError::MissingSecret);
    assert!(
        missing.to_string().contains("KENDO_WEBHOOK_SECRET"),
        "{missing}"
    );
    let empty = AppConfig::from_lookup(env(&[("KENDO_WEBHOOK_SECRET", "")])).unwrap_err();
    assert_eq!(empty, ConfigError::MissingSecret);

    let config = AppConfig::from_lookup(env(&[("KENDO_WEBHOOK_SECRET", "s3cr3t-value")]))
        .expect("a secret is enough");
    assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 3000)));
    assert_eq!(config.db_path, PathBuf::from("crm.sqlite3"));
    assert_eq!(config.previous_secret, None);

    let config = AppConfig::from_lookup(env(&[
        ("KENDO_WEBHOOK_SECRET", "s3cr3t-value"),
        ("KENDO_WEBHOOK_SECRET_PREVIOUS", "old-s3cr3t"),
        ("CRM_ADDR", "0.0.0.0:8080"),
        ("CRM_DB", "/tmp/crm-test.sqlite3"),
    ]))
    .expect("a full configuration");
    assert_eq!(config.addr, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(config.db_path, PathBuf::from("/tmp/crm-test.sqlite3"));
    assert_eq!(config.previous_secret.as_deref(), Some("old-s3cr3t"));
    let shown = format!("{}\n{config:?}", config.describe().join("\n"));
    assert!(
        !shown.contains("s3cr3t"),
        "secrets are never shown: {shown}"
    );
    assert!(
        shown.contains("0.0.0.0:8080") && shown.contains("/tmp/crm-test.sqlite3"),
        "{shown}"
    );

    assert!(config.padded_secrets().is_empty());
    let padded = AppConfig::from_lookup(env(&[("KENDO_WEBHOOK_SECRET", "pasted\n")])).expect("ok");
    assert_eq!(padded.padded_secrets(), ["KENDO_WEBHOOK_SECRET"]);

    let bad = AppConfig::from_lookup(env(&[
        ("KENDO_WEBHOOK_SECRET", "s"),
        ("CRM_ADDR", "localhost"),
    ]))
    .unwrap_err();
    assert!(matches!(bad, ConfigError::BadAddr { .. }), "{bad:?}");
    assert!(bad.to_string().contains("CRM_ADDR"), "{bad}");
}
