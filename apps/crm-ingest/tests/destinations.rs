//! Destinations and alerts (issue 20), with real parts: the app on
//! 127.0.0.1:0 over real HTTP, real receivers (axum) started here, one of
//! which checks every `webhook-signature` with svix's `Webhook::verify` (an
//! independent Standard Webhooks implementation), SQLite files and a real
//! Postgres (`kendo-test-support`; SKIPPED without it, a failure under
//! `CI`), and the real binary for the configuration's exit codes.
//!
//! (About 1250 lines, one file on purpose: forwarding and alerts on both backends. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)
//!
//! The retry schedule is shortened in the tests' `CRM_CONFIG` (`[retry]`),
//! so an outage costs seconds, not minutes.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{call_body, eventually, Http, SECRET};
use crm_ingest::config::Database;
use crm_ingest::destinations::Settings;
use http_body_util::Full;
use hyper::Request;
use kendo_test_support::postgres_server::PostgresServer;
use kendo_webhooks::SignedDelivery;
use serde_json::Value;

/// The destinations' secret (Standard Webhooks' own example).
const DESTINATION_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200.
    Ok,
    /// This status.
    Status(u16),
    /// Never answers.
    Hang,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: Option<String>,
    body: Bytes,
    /// svix's verdict, when the receiver has a secret.
    verified: Option<bool>,
}

/// A real HTTP receiver on 127.0.0.1.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    mode: Arc<Mutex<Mode>>,
}

struct ReceiverState {
    got: Arc<Mutex<Vec<Got>>>,
    mode: Arc<Mutex<Mode>>,
    webhook: Option<svix::webhooks::Webhook>,
    delay: Duration,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verified = state
        .webhook
        .as_ref()
        .map(|webhook| webhook.verify(&body, &headers).is_ok());
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mode = *state.mode.lock().unwrap();
    if mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    // Recorded (processed) first, answered after the delay: a sender that
    // dies in between sends the event again.
    state.got.lock().unwrap().push(Got { id, body, verified });
    tokio::time::sleep(state.delay).await;
    match mode {
        Mode::Status(status) => StatusCode::from_u16(status).expect("a status"),
        _ => StatusCode::OK,
    }
}

impl Receiver {
    /// A receiver on a free port.
    async fn start(mode: Mode, secret: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a port");
        Self::serve(listener, mode, secret, Duration::ZERO)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        mode: Mode,
        secret: Option<&str>,
        delay: Duration,
    ) -> Self {
        let addr = listener.local_addr().expect("an address");
        let got = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let state = Arc::new(ReceiverState {
            got: Arc::clone(&got),
            mode: Arc::clone(&mode),
            webhook: secret.map(|s| svix::webhooks::Webhook::new(s).expect("a svix key")),
            delay,
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, got, mode }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The `webhook-id`s received, in order.
    fn ids(&self) -> Vec<String> {
        self.got().into_iter().filter_map(|g| g.id).collect()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// A `[[destinations]]` entry.
fn destination(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// The tests' short retry schedule.
const FAST_RETRY: &str = "[retry]\nfirst_delay_ms = 100\nmax_delay_ms = 1000\ntimeout_ms = 1000\n";

fn settings(toml: &str) -> Settings {
    Settings::parse(toml, |_| None).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// A real `call.uploaded` scored `score`, signed with Kendo's secret.
fn call(i: usize, score: &str) -> (String, SignedDelivery) {
    let event_id = format!("evt_{i:04}");
    let body = call_body(&event_id, "agent_1", Some("Ana"), score, 60);
    let delivery = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id(format!("dlv_{i:04}"))
        .sign(SECRET);
    (event_id, delivery)
}

async fn admin_post(http: &Http, addr: SocketAddr, path: &str) -> common::Reply {
    http.send(
        Request::post(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {}", common::TOKEN))
            .body(Full::default())
            .expect("a request"),
    )
    .await
}

/// The target named `name` in `GET /api/destinations`.
async fn target(http: &Http, addr: SocketAddr, name: &str) -> Value {
    http.array(addr, "/api/destinations")
        .await
        .into_iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed"))
}

// ---------------------------------------------------------------------------
// Signed forwarding, selection, 410, alerts, console and replay.

async fn forwards_signed_events_and_alerts(database: Database) {
    let signed_receiver = Receiver::start(Mode::Ok, Some(DESTINATION_SECRET)).await;
    let gone = Receiver::start(Mode::Status(410), None).await;
    let all = Receiver::start(Mode::Ok, None).await;
    let slack = Receiver::start(Mode::Ok, None).await;
    let toml =
        format!(
        "{}{}{}[[alerts]]\nname = \"low-score\"\nurl = \"{}\"\ncall_score_below = 50\n{FAST_RETRY}",
        destination(
            "zapier",
            &signed_receiver.url(),
            &format!("events = [\"call.uploaded\"]\nsecret = \"{DESTINATION_SECRET}\"")
        ),
        destination("gone", &gone.url(), "") + &destination("all", &all.url(), ""),
        destination("trainings-only", &slack.url(), "events = [\"ai_training.completed\"]"),
        slack.url(),
    );
    let mut config = common::config_on(database);
    config.destinations = settings(&toml);
    config.public_origin = Some("https://crm.example.com".to_owned());
    let app = common::start(config).await;
    let addr = app.addr();
    let http = Http::new();

    // Four real calls (two below 50), one test delivery (forwarded nowhere).
    let scores = ["42", "80", "12.5", "50"];
    let mut sent = BTreeMap::new();
    for (i, score) in scores.iter().enumerate() {
        let (event_id, delivery) = call(i, score);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
        sent.insert(event_id, delivery);
    }
    let test = common::test_delivery("evt_test", "dlv_test");
    assert_eq!(http.deliver(addr, &test).await.status, StatusCode::OK);
    // A copy (Kendo's retry) adds nothing.
    assert_eq!(
        http.deliver(addr, &sent["evt_0000"]).await.status,
        StatusCode::OK
    );

    let got = eventually("four calls at the signed destination", || async {
        let got = signed_receiver.got();
        (got.len() >= 4).then_some(got)
    })
    .await;
    eventually("two alerts", || async {
        (slack.got().len() >= 2).then_some(())
    })
    .await;
    eventually("each event gone once", || async {
        (gone.got().len() >= 4).then_some(())
    })
    .await;
    // Settle time for anything extra to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;

    assert_eq!(
        signed_receiver.got().len(),
        4,
        "no duplicates, no test delivery"
    );
    for g in &got {
        assert_eq!(g.verified, Some(true), "svix verifies the signature");
        let id = g.id.as_deref().expect("webhook-id");
        assert_eq!(g.body, sent[id].body(), "the raw Kendo body, byte for byte");
    }
    assert_eq!(
        signed_receiver.ids(),
        ["evt_0000", "evt_0001", "evt_0002", "evt_0003"]
    );

    // 410 Gone: one attempt each, then dead.
    assert_eq!(gone.got().len(), 4, "410 stops the attempts at once");

    // An event the CRM keeps no table for is forwarded too (alone in its
    // batch: the outbox rows are written without a projection).
    let other = serde_json::json!({
        "id": "evt_other", "event": "agent.created", "created_at": common::CREATED_AT,
        "data": { "agentId": "agent_9" }
    })
    .to_string();
    let other = SignedDelivery::builder(other)
        .event("agent.created")
        .delivery_id("dlv_other")
        .sign(SECRET);
    assert_eq!(http.deliver(addr, &other).await.status, StatusCode::OK);
    eventually("the other event at the every-event destination", || async {
        (all.ids().len() == 5).then_some(())
    })
    .await;
    assert_eq!(all.ids()[4], "evt_other");
    assert_eq!(all.got()[4].body, other.body());
    assert_eq!(
        signed_receiver.got().len(),
        4,
        "not an event zapier selects"
    );
    let gone_state = eventually("the other event gone too", || async {
        let t = target(&http, addr, "gone").await;
        (t["dead"] == 5).then_some(t)
    })
    .await;
    assert_eq!(gone.got().len(), 5, "410 stops the attempts at once");
    assert_eq!(gone_state["state"], "dead", "{gone_state}");

    // Alerts: the two real calls below 50, as Slack's JSON, with the link.
    let alerts: Vec<Value> = slack
        .got()
        .iter()
        .map(|g| serde_json::from_slice(&g.body).expect("JSON"))
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let texts: Vec<&str> = alerts.iter().filter_map(|a| a["text"].as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("Ana scored 42")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Ana scored 12.5")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .all(|t| t.contains("https://crm.example.com/?q=call_evt_")),
        "{texts:?}"
    );

    // The console and the API.
    let zapier = eventually("zapier's rows settled", || async {
        let t = target(&http, addr, "zapier").await;
        (t["pending"] == 0).then_some(t)
    })
    .await;
    assert_eq!(zapier["delivered"], 4, "{zapier}");
    assert_eq!(zapier["signed"], true);
    assert_eq!(
        zapier["endpoint"],
        format!("http://{}", signed_receiver.addr)
    );
    assert_eq!(target(&http, addr, "trainings-only").await["state"], "idle");
    let rows = http
        .array(addr, "/api/destinations/gone/events?state=dead")
        .await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["history"][0]["status"], 410);
    let page = http.get(addr, "/destinations?name=gone").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("replay 5 dead"), "{}", page.text());
    assert_eq!(
        http.get_with(addr, "/api/destinations", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Replay one delivered event, then every dead one.
    let replayed = admin_post(
        &http,
        addr,
        "/api/destinations/zapier/replay?event_id=evt_0001",
    )
    .await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.text());
    assert_eq!(replayed.json()["replayed"], 1);
    eventually("the replayed event again", || async {
        (signed_receiver.got().len() == 5).then_some(())
    })
    .await;
    assert_eq!(signed_receiver.ids()[4], "evt_0001");
    gone.set(Mode::Ok);
    let replayed = admin_post(&http, addr, "/api/destinations/gone/replay-dead").await;
    assert_eq!(replayed.json()["replayed"], 5);
    eventually("the dead rows delivered", || async {
        let t = target(&http, addr, "gone").await;
        (t["delivered"] == 5 && t["dead"] == 0).then_some(())
    })
    .await;
    assert_eq!(
        admin_post(&http, addr, "/api/destinations/nobody/replay-dead")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A cross-site page may not replay.
    let forged = http
        .send(
            Request::post(format!("http://{addr}/api/destinations/gone/replay-dead"))
                .header("authorization", format!("Bearer {}", common::TOKEN))
                .header("origin", "https://evil.example")
                .body(Full::default())
                .expect("a request"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let metrics = http.get(addr, "/metrics").await.text();
    for line in [
        "# HELP crm_destination_deliveries_total",
        "crm_destination_deliveries_total{destination=\"zapier\",outcome=\"delivered\"}",
        "crm_destination_deliveries_total{destination=\"gone\",outcome=\"gone\"}",
        "crm_destination_attempt_duration_seconds_bucket{destination=\"zapier\"",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_forwards_signed_events_and_alerts() {
    let (_dir, db) = common::temp_db();
    forwards_signed_events_and_alerts(Database::Sqlite(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_forwards_signed_events_and_alerts() {
    let Some(pg) = PostgresServer::start_or_skip("destinations postgres_forwards") else {
        return;
    };
    forwards_signed_events_and_alerts(Database::Postgres(pg.url())).await;
}

// ---------------------------------------------------------------------------
// The watched alerts: Kendo silent, inbox rows dead.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_watched_alerts_fire_for_silence_and_dead_rows() {
    let (_dir, db) = common::temp_db();
    // A first run stores a delivery and leaves it in the inbox.
    let mut config = common::config(&db);
    config.run_worker = false;
    let app = common::start(config).await;
    let http = Http::new();
    let (_, delivery) = call(0, "70");
    assert_eq!(
        http.deliver(app.addr(), &delivery).await.status,
        StatusCode::OK
    );
    common::eventually("the delivery logged", || async {
        (http.array(app.addr(), "/api/deliveries").await.len() == 1).then_some(())
    })
    .await;
    app.shutdown().await;
    // Its projection gave up, and it was the last delivery, 2 minutes ago.
    let conn = rusqlite::Connection::open(&db).expect("the database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("a timeout");
    conn.execute_batch(
        "UPDATE kendo_inbox SET state = 'dead';
         UPDATE deliveries SET received_ms = received_ms - 120000;",
    )
    .expect("a dead row and a silence");
    drop(conn);

    let slack = Receiver::start(Mode::Ok, None).await;
    let mut config = common::config(&db);
    config.run_worker = false;
    config.destinations = settings(&format!(
        "[[alerts]]\nname = \"silent\"\nurl = \"{url}\"\nsilent_for_minutes = 1\n\
         [[alerts]]\nname = \"dead\"\nurl = \"{url}\"\ndead_rows = true\n",
        url = slack.url()
    ));
    let app = common::start(config).await;
    let texts = eventually("both alerts", || async {
        let got = slack.got();
        (got.len() >= 2).then(|| {
            got.iter()
                .map(|g| {
                    let json: Value = serde_json::from_slice(&g.body).expect("JSON");
                    json["text"].as_str().unwrap_or_default().to_owned()
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert!(
        texts.iter().any(|t| t.starts_with("Kendo is silent")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("1 inbox row(s) are dead")),
        "{texts:?}"
    );
    // The receiver has the request before the row is settled: wait for it.
    let http = Http::new();
    for name in ["silent", "dead"] {
        let state = eventually("the alert settled as delivered", || async {
            let t = target(&http, app.addr(), name).await;
            (t["pending"] == 0).then_some(t)
        })
        .await;
        assert_eq!(state["delivered"], 1, "{name}: {state}");
    }
    app.shutdown().await;
}

/// Bob's three newest calls average 30, Ana's 90: one alert, for Bob.
async fn an_agent_below_the_average_is_reported(database: Database) {
    let app = common::start(common::config_on(database.clone())).await;
    let http = Http::new();
    for (i, (agent, score)) in [("Bob", "20"), ("Ana", "90"), ("Bob", "30"), ("Bob", "40")]
        .into_iter()
        .chain([("Ana", "85"), ("Ana", "95")])
        .enumerate()
    {
        let event_id = format!("evt_avg_{i}");
        let body = call_body(&event_id, &format!("agent_{agent}"), Some(agent), score, 60);
        let delivery = SignedDelivery::builder(body)
            .event("call.uploaded")
            .delivery_id(format!("dlv_avg_{i}"))
            .sign(SECRET);
        assert_eq!(
            http.deliver(app.addr(), &delivery).await.status,
            StatusCode::OK
        );
    }
    common::rows(&http, app.addr(), "/api/calls", 6).await;
    app.shutdown().await;

    let slack = Receiver::start(Mode::Ok, None).await;
    let mut config = common::config_on(database);
    config.destinations = settings(&format!(
        "[[alerts]]\nname = \"coaching\"\nurl = \"{}\"\nagent_average_below = 50\nagent_window = 3\n",
        slack.url()
    ));
    let app = common::start(config).await;
    eventually("the coaching alert", || async {
        (!slack.got().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = slack.got();
    assert_eq!(got.len(), 1, "Bob only");
    let json: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(
        json["text"],
        "Bob's average AI score over the last 3 calls is 30, below 50."
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_agent_below_the_average_is_reported() {
    let (_dir, db) = common::temp_db();
    an_agent_below_the_average_is_reported(Database::Sqlite(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_agent_below_the_average_is_reported() {
    let Some(pg) = PostgresServer::start_or_skip("destinations postgres_agent_average") else {
        return;
    };
    an_agent_below_the_average_is_reported(Database::Postgres(pg.url())).await;
}

// ---------------------------------------------------------------------------
// An outage: nothing lost, each event once, in store order.

/// How long the destination is down (refused connections):
/// `CRM_OUTAGE_SECS`, default 8. `CRM_OUTAGE_DEFAULT_RETRY=1` keeps the
/// default retry schedule (1 s doubling to 15 min) instead of the tests'
/// short one, e.g. the 30 s outage:
/// `CRM_OUTAGE_SECS=30 CRM_OUTAGE_DEFAULT_RETRY=1 cargo test -p crm-ingest
/// --all-features --test destinations outage -- --nocapture`.
fn outage() -> (Duration, &'static str) {
    let secs = std::env::var("CRM_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let retry = if std::env::var("CRM_OUTAGE_DEFAULT_RETRY").is_ok_and(|v| v == "1") {
        ""
    } else {
        FAST_RETRY
    };
    (Duration::from_secs(secs), retry)
}

async fn an_outage_loses_nothing_and_keeps_order(database: Database) {
    // The destination's port, free until it comes up.
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (outage, retry) = outage();
    let mut config = common::config_on(database);
    config.destinations = settings(&format!(
        "{}{retry}",
        destination("down", &url, &format!("secret = \"{DESTINATION_SECRET}\""))
    ));
    let app = common::start(config).await;
    let addr = app.addr();
    let http = Http::new();
    let down_since = Instant::now();
    let mut ids = Vec::new();
    for i in 0..30 {
        let (event_id, delivery) = call(i, "70");
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
        ids.push(event_id);
    }
    eventually("the destination failing", || async {
        let t = target(&http, addr, "down").await;
        (t["state"] == "failing").then_some(())
    })
    .await;
    tokio::time::sleep(outage.saturating_sub(down_since.elapsed())).await;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("the destination's port is free again");
    let receiver = Receiver::serve(listener, Mode::Ok, Some(DESTINATION_SECRET), Duration::ZERO);
    let up = Instant::now();
    // Bounded by the schedule's cap at this point (about the outage's
    // length), not by the helpers' patience.
    let deadline = up + outage * 2 + Duration::from_secs(20);
    while receiver.got().len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "the backlog was not delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backlog_in = up.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.ids();
    assert_eq!(got, ids, "every event once, in store order");
    assert!(receiver.got().iter().all(|g| g.verified == Some(true)));
    let state = target(&http, addr, "down").await;
    assert_eq!(state["delivered"], 30, "{state}");
    assert_eq!(state["pending"], 0, "{state}");
    let first = http
        .array(addr, "/api/destinations/down/events?event_id=evt_0000")
        .await;
    let attempts = first[0]["history"].as_array().expect("attempts").len();
    println!(
        "outage {outage:?}: backlog of {} delivered {backlog_in:?} after the destination came back; \
         the oldest event took {attempts} attempts",
        ids.len()
    );
    assert!(attempts >= 2, "the oldest event was retried");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outage_loses_nothing_and_keeps_order() {
    let (_dir, db) = common::temp_db();
    an_outage_loses_nothing_and_keeps_order(Database::Sqlite(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_keeps_order() {
    let Some(pg) = PostgresServer::start_or_skip("destinations postgres_outage") else {
        return;
    };
    an_outage_loses_nothing_and_keeps_order(Database::Postgres(pg.url())).await;
}

// ---------------------------------------------------------------------------
// A hanging destination holds up nothing else.

/// The webhook's answer times of `n` deliveries from `first`, sorted.
async fn ingest_times(http: &Http, addr: SocketAddr, first: usize, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in first..first + n {
        let (_, delivery) = call(i, "70");
        let started = Instant::now();
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// `median, p99, max` of sorted times.
fn spread(times: &[Duration]) -> String {
    format!(
        "median {:?}, p99 {:?}, max {:?}",
        times[times.len() / 2],
        times[(times.len() * 99).div_ceil(100) - 1],
        times[times.len() - 1]
    )
}

async fn a_hanging_destination_holds_up_nothing(database: Database, baseline: Database) {
    let n = 40;
    // The baseline: the same deliveries to an app without destinations.
    let app = common::start(common::config_on(baseline)).await;
    let http = Http::new();
    let base = ingest_times(&http, app.addr(), 0, n).await;
    app.shutdown().await;

    let hanging = Receiver::start(Mode::Hang, None).await;
    let healthy = Receiver::start(Mode::Ok, None).await;
    let mut config = common::config_on(database);
    // The default timeout (10 s): an ingest that waited on it would show.
    config.destinations = settings(&format!(
        "{}{}",
        destination("hanging", &hanging.url(), "concurrency = 4"),
        destination("healthy", &healthy.url(), "")
    ));
    let app = common::start(config).await;
    let addr = app.addr();
    let times = ingest_times(&http, addr, 0, n).await;
    eventually("the healthy destination has every event", || async {
        (healthy.got().len() == n).then_some(())
    })
    .await;
    let hanging_state = target(&http, addr, "hanging").await;
    assert_eq!(hanging_state["delivered"], 0, "{hanging_state}");
    println!(
        "ingest of {n} deliveries, one at a time: without destinations {}; \
         with a hanging one and a healthy one {}",
        spread(&base),
        spread(&times)
    );
    // Far below the hanging destination's 10 s timeout: nothing waited on it.
    assert!(times[times.len() - 1] < Duration::from_secs(5));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hanging_destination_holds_up_nothing() {
    let (_dir, db) = common::temp_db();
    let (_base_dir, base) = common::temp_db();
    a_hanging_destination_holds_up_nothing(Database::Sqlite(db), Database::Sqlite(base)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hanging_destination_holds_up_nothing() {
    let Some(pg) = PostgresServer::start_or_skip("destinations postgres_hanging") else {
        return;
    };
    let Some(base) = PostgresServer::start_or_skip("destinations postgres_hanging baseline") else {
        return;
    };
    a_hanging_destination_holds_up_nothing(
        Database::Postgres(pg.url()),
        Database::Postgres(base.url()),
    )
    .await;
}

// ---------------------------------------------------------------------------
// A bad CRM_CONFIG stops the real binary with one sentence and exit code 2.

#[test]
fn each_bad_key_stops_the_binary_with_its_sentence_and_code_2() {
    let dir = tempfile::tempdir().expect("a directory");
    let ok = "[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\n";
    let cases = [
        (format!("{ok}urll = \"x\""), "urll"),
        (
            ok.replace("https://x.test/", "not a url"),
            "destinations[0].url",
        ),
        (format!("{ok}secret = \"abc\""), "destinations[0].secret"),
        (
            format!("{ok}secret_env = \"CRM_TEST_UNSET_SECRET\""),
            "destinations[0].secret_env",
        ),
        (format!("{ok}{ok}"), "destinations[1].name"),
        (
            "[[alerts]]\nname = \"b\"\nurl = \"https://x.test/\"\ncall_score_below = 500"
                .to_owned(),
            "alerts[0].call_score_below",
        ),
        ("[retry]\nmax_delay_ms = 0".to_owned(), "retry.max_delay_ms"),
        ("[[destination]]\nname = \"a\"".to_owned(), "destination"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("crm-{i}.toml"));
        std::fs::write(&path, text).expect("written");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_crm-ingest"))
            .env_clear()
            .env("KENDO_WEBHOOK_SECRET", SECRET)
            .env("CRM_CONFIG", &path)
            .env("CRM_DB", dir.path().join("never.sqlite3"))
            .env("CRM_ADDR", "127.0.0.1:0")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr} does not name {key}");
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        assert!(
            !dir.path().join("never.sqlite3").exists(),
            "nothing started"
        );
    }
}

// ---------------------------------------------------------------------------
// Replicas killed (SIGKILL) while forwarding, on one Postgres.

const REPLICAS: usize = 3;

/// Three `crm-ingest` processes on one Postgres; killed when dropped.
struct Replicas {
    ports: Vec<u16>,
    children: Mutex<Vec<Option<std::process::Child>>>,
    database_url: String,
    config: std::path::PathBuf,
    log_dir: std::path::PathBuf,
}

impl Replicas {
    fn spawn(&self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("replica-{i}.log")))
            .expect("a log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-ingest"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KENDO_WEBHOOK_SECRET", SECRET)
            .env("CRM_ADDR", format!("127.0.0.1:{}", self.ports[i]))
            .env("CRM_DATABASE_URL", &self.database_url)
            .env("CRM_ADMIN_TOKEN", common::TOKEN)
            .env("CRM_WORKER_LEASE_SECS", "2")
            .env("CRM_CONFIG", &self.config)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start crm-ingest");
        self.children.lock().unwrap()[i] = Some(child);
    }

    /// SIGKILL (`Child::kill` on Unix).
    fn kill(&self, i: usize) -> bool {
        match self.children.lock().unwrap()[i].take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    async fn start(&self, i: usize) {
        for _ in 0..5 {
            self.spawn(i);
            if healthy(self.ports[i]).await {
                return;
            }
            self.kill(i);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("replica {i} does not start; see {}", self.log_dir.display());
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in self.children.lock().unwrap().iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn healthy(port: u16) -> bool {
    let client = client();
    for _ in 0..200 {
        let request = Request::get(format!("http://127.0.0.1:{port}/healthz"))
            .body(Full::default())
            .expect("a request");
        if let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(1), client.request(request)).await
        {
            if response.status() == StatusCode::OK {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Whether a replica acknowledged the delivery with a 2xx.
async fn try_deliver(client: &Client, port: u16, delivery: &SignedDelivery) -> bool {
    let Ok(request) = delivery.request(&format!("http://127.0.0.1:{port}/webhooks/kendo")) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_killed_while_forwarding_deliver_each_event_at_least_once() {
    let Some(pg) = PostgresServer::start_or_skip("destinations replicas killed") else {
        return;
    };
    // `CRM_DESTINATIONS_CHAOS_EVENTS` for a longer run.
    let total = std::env::var("CRM_DESTINATIONS_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    // Each event is processed at once and answered 200 ms later: kills
    // land between the receiver's processing and the replica's settle, the
    // one window for a duplicate.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let receiver = Receiver::serve(
        listener,
        Mode::Ok,
        Some(DESTINATION_SECRET),
        Duration::from_millis(200),
    );
    let dir = tempfile::tempdir().expect("a directory");
    let config = dir.path().join("crm.toml");
    std::fs::write(
        &config,
        format!(
            "{}[retry]\nfirst_delay_ms = 100\nmax_delay_ms = 1000\ntimeout_ms = 2000\n",
            destination(
                "chaos",
                &receiver.url(),
                &format!("secret = \"{DESTINATION_SECRET}\"")
            )
        ),
    )
    .expect("the config");
    let ports = (0..REPLICAS)
        .map(|_| {
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a port")
                .port()
        })
        .collect();
    let replicas = Arc::new(Replicas {
        ports,
        children: Mutex::new((0..REPLICAS).map(|_| None).collect()),
        database_url: pg.url(),
        config,
        log_dir: dir.path().to_path_buf(),
    });
    for i in 0..REPLICAS {
        replicas.start(i).await;
    }

    // The killer: every 1.5 s a replica dies (SIGKILL) and comes back 0.5 s later.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (replicas, stop) = (Arc::clone(&replicas), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut kills = 0_usize;
            let mut victim = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                victim = (victim + 1) % REPLICAS;
                if replicas.kill(victim) {
                    kills += 1;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                replicas.start(victim).await;
            }
            kills
        })
    };

    // Every event acknowledged by some replica (retried until one answers 2xx).
    let client = client();
    let mut ids = Vec::new();
    for i in 0..total {
        let (event_id, delivery) = call(i, "70");
        let mut port = i % REPLICAS;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !try_deliver(&client, replicas.ports[port], &delivery).await {
            assert!(
                Instant::now() < deadline,
                "no replica acknowledged {event_id}"
            );
            port = (port + 1) % REPLICAS;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids.push(event_id);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: std::collections::HashSet<String> = receiver.ids().into_iter().collect();
        if ids.iter().all(|id| got.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} events never reached the destination; logs in {}",
            ids.iter().filter(|id| !got.contains(*id)).count(),
            dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.await.expect("the killer");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in receiver.ids() {
        *counts.entry(id).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(receiver.got().iter().all(|g| g.verified == Some(true)));
    println!(
        "{total} events, {kills} replicas killed while forwarding: each delivered at least once, \
         {duplicates} sent twice (a replica died after the destination took the event, before its settle)"
    );
    assert_eq!(counts.len(), total, "only the events sent");
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates but {kills} kills: at most one in flight per killed replica"
    );
}

// ---------------------------------------------------------------------------
// The console's page in a real headless Chromium.

/// `/destinations` as a browser renders it (logged in with HTTP Basic, the
/// app's CSP on): every target with its state, a failing destination's rows
/// with their attempts and the buttons. `UPDATE_SCREENSHOTS=1` writes
/// `docs/destinations.png`. SKIPPED without Chromium (a failure under `CI`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destinations_page_renders_in_a_browser() {
    use kendo_test_support::chromium::{admin_url, assert_not_blank, Chromium, DESKTOP};
    let Some(chromium) = Chromium::find_or_skip("destinations page") else {
        return;
    };
    let zapier = Receiver::start(Mode::Ok, Some(DESTINATION_SECRET)).await;
    let flaky = Receiver::start(Mode::Status(503), None).await;
    let gone = Receiver::start(Mode::Status(410), None).await;
    let slack = Receiver::start(Mode::Ok, None).await;
    let (_dir, db) = common::temp_db();
    let mut config = common::config(&db);
    config.destinations = settings(&format!(
        "{}{}{}[[alerts]]\nname = \"low-score\"\nurl = \"{}\"\ncall_score_below = 50\n{FAST_RETRY}",
        destination(
            "zapier",
            &zapier.url(),
            &format!("events = [\"call.uploaded\"]\nsecret = \"{DESTINATION_SECRET}\"")
        ),
        destination("make-scenario", &flaky.url(), ""),
        destination("old-endpoint", &gone.url(), ""),
        slack.url(),
    ));
    let app = common::start(config).await;
    let addr = app.addr();
    let http = Http::new();
    for (i, score) in ["88", "42", "73", "95", "31", "67"].iter().enumerate() {
        let (_, delivery) = call(i, score);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    }
    eventually("every target settled", || async {
        let zapier = target(&http, addr, "zapier").await;
        let gone = target(&http, addr, "old-endpoint").await;
        let flaky = target(&http, addr, "make-scenario").await;
        (zapier["delivered"] == 6
            && gone["dead"] == 6
            && flaky["state"] == "failing"
            && flaky_attempts(&http, addr).await >= 3)
            .then_some(())
    })
    .await;

    let url = admin_url(addr, common::TOKEN, "/destinations?name=make-scenario");
    let page = tokio::task::spawn_blocking(move || chromium.load(&url, DESKTOP))
        .await
        .expect("chromium ran");
    for shown in [
        "Destinations and alerts",
        "zapier",
        "make-scenario",
        "old-endpoint",
        "low-score",
        "failing since",
        "replay 6 dead",
        "make-scenario: newest rows",
        "503",
        "evt_0005",
    ] {
        assert!(page.dom.contains(shown), "the page shows {shown:?}");
    }
    let stats = assert_not_blank(&page.screenshot);
    println!("destinations page: {stats:?}");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        page.keep_screenshot(&docs.join("destinations.png"));
    }
    app.shutdown().await;
}

/// Attempts made on the failing destination's oldest row.
async fn flaky_attempts(http: &Http, addr: SocketAddr) -> usize {
    http.array(
        addr,
        "/api/destinations/make-scenario/events?event_id=evt_0000",
    )
    .await
    .first()
    .and_then(|row| row["history"].as_array().map(Vec::len))
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// HTTPS, for real: rustls on both sides, an internal CA (`ca_file`).

/// A test CA and a `localhost` certificate it signed: (CA PEM, certificate
/// PEM, key PEM).
fn test_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "crm-ingest destinations test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).expect("self-sign the CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let pem = server.signed_by(&key, &issuer).expect("signed").pem();
    (ca_pem, pem, key.serialize_pem())
}

/// A receiver behind TLS (rustls) on 127.0.0.1, for `https://localhost:…`.
async fn tls_receiver(cert_pem: &str, key_pem: &str) -> Receiver {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("a certificate")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    // The plain receiver on a listener of its own; TLS is terminated here
    // and the bytes relayed to it.
    let inner = Receiver::start(Mode::Ok, Some(DESTINATION_SECRET)).await;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let target = inner.addr;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    Receiver { addr, ..inner }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_destination_behind_an_internal_ca_gets_signed_events() {
    let (ca_pem, cert_pem, key_pem) = test_pki();
    let receiver = tls_receiver(&cert_pem, &key_pem).await;
    let dir = tempfile::tempdir().expect("a directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("the CA file");
    let url = format!("https://localhost:{}/hook", receiver.addr.port());
    let (db_dir, db) = common::temp_db();
    let mut config = common::config(&db);
    config.destinations = settings(&format!(
        "{}{}{FAST_RETRY}",
        destination(
            "internal",
            &url,
            &format!(
                "secret = \"{DESTINATION_SECRET}\"\nca_file = \"{}\"",
                ca_file.display()
            )
        ),
        // The same endpoint without the CA: the public roots do not trust it.
        destination("untrusted", &url, "")
    ));
    let app = common::start(config).await;
    let http = Http::new();
    let (event_id, delivery) = call(0, "70");
    assert_eq!(
        http.deliver(app.addr(), &delivery).await.status,
        StatusCode::OK
    );
    eventually("the event over HTTPS", || async {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    let got = receiver.got();
    assert_eq!(got[0].id.as_deref(), Some(event_id.as_str()));
    assert_eq!(got[0].verified, Some(true), "svix verifies it");
    let rows = eventually("the untrusted destination's failed attempt", || async {
        let rows = http
            .array(app.addr(), "/api/destinations/untrusted/events")
            .await;
        rows.first()
            .filter(|row| !row["history"].as_array().is_none_or(Vec::is_empty))
            .cloned()
    })
    .await;
    let answer = rows["history"][0]["answer"].as_str().unwrap_or_default();
    assert!(rows["history"][0]["status"].is_null(), "{rows}");
    assert!(answer.contains("certificate"), "says why: {answer}");
    println!("without the CA: {answer}");
    app.shutdown().await;
    drop(db_dir);
}
