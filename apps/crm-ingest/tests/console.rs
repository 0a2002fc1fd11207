//! The operator console over real HTTP, on SQLite and on Postgres: one
//! delivery's detail (body, headers, answer, attempts, inbox row,
//! projection), the actions (requeue, replay), search and filters, and
//! CSV export.
//!
//! (About 950 lines, one file on purpose: every console page and action on both backends. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)

mod common;

use common::*;
use crm_ingest::config::Database;
use hyper::{Request, StatusCode};
use kendo_test_support::postgres_server::PostgresServer;
use kendo_webhooks::SignedDelivery;
use serde_json::Value;

/// `POST` as the admin, with extra headers (a browser's form post sends
/// `Origin` and `Sec-Fetch-Site`).
async fn post(
    http: &Http,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http.send(request.body(Default::default()).expect("a valid request"))
        .await
}

async fn on_postgres(test: &str, run: impl AsyncFnOnce(Database)) {
    let Some(pg) = PostgresServer::start_or_skip(test) else {
        return;
    };
    run(Database::Postgres(pg.url())).await;
}

fn sqlite() -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db();
    (dir, Database::Sqlite(db))
}

// ---------------------------------------------------------------- detail

async fn a_delivery_shows_what_was_sent_answered_and_written(database: Database) {
    let app = start(config_on(database)).await;
    let (http, addr) = (Http::new(), app.addr());
    let delivery = signed("call.uploaded", "evt_detail", "dlv_detail");
    assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    let retry = http.deliver(addr, &delivery).await;
    assert!(retry.is_duplicate(), "{:?}", retry.rejection());

    let detail = eventually("the detail with its projection", || async {
        let reply = http.get(addr, "/api/deliveries/dlv_detail").await;
        if reply.status != StatusCode::OK {
            return None;
        }
        let detail = reply.json();
        (detail["attempts"].as_array().map(Vec::len) == Some(2)
            && detail["inbox"]["state"] == "done"
            && detail["projection"].is_object())
        .then_some(detail)
    })
    .await;
    assert_eq!(detail["deliveryId"], "dlv_detail");
    assert_eq!(detail["eventId"], "evt_detail");
    assert_eq!(detail["event"], "call.uploaded");
    assert_eq!(detail["outcome"], "duplicate", "the newest attempt's");
    assert_eq!(detail["verified"], true);
    assert_eq!(detail["secretLabel"], "current");
    let sent = String::from_utf8(delivery.body().to_vec()).unwrap();
    assert_eq!(detail["body"], sent.as_str(), "the raw body, as received");
    let signature = detail["headers"]["x-kendo-signature"].as_str().unwrap();
    assert!(
        signature.ends_with('…') && signature.chars().count() == 13,
        "{signature}"
    );
    assert_eq!(detail["headers"]["x-kendo-delivery-id"], "dlv_detail");
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "accepted");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["reason"], Value::Null);
    assert_eq!(attempts[1]["outcome"], "duplicate");
    assert!(attempts[0]["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(detail["answer"]["status"], StatusCode::OK.as_u16());
    assert_eq!(
        detail["answer"]["headers"]["x-kendo-webhook-duplicate"], "true",
        "the newest attempt was answered as a duplicate"
    );
    assert_eq!(detail["inbox"]["attempts"], 1);
    assert_eq!(detail["inbox"]["nextTry"], Value::Null);
    assert_eq!(detail["projection"]["table"], "calls");
    assert_eq!(detail["projection"]["row"]["callId"], "call_evt_detail");
    assert_eq!(detail["projection"]["row"]["agentName"], "Sales Agent");

    let page = http.get(addr, "/deliveries/dlv_detail").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("\n  &quot;event&quot;: &quot;call.uploaded&quot;"),
        "pretty body"
    );
    assert!(html.contains("Replay through the projection"), "a done row");
    assert!(html.contains("idempotent"));
    let dashboard = http.get(addr, "/").await.text();
    assert!(dashboard.contains(r#"href="/deliveries/dlv_detail""#));

    let missing = http.get(addr, "/api/deliveries/dlv_nowhere").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("dlv_nowhere"));
    let missing_page = http.get(addr, "/deliveries/dlv_nowhere").await;
    assert_eq!(missing_page.status, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_delivery_shows_what_was_sent_answered_and_written() {
    let (_dir, database) = sqlite();
    a_delivery_shows_what_was_sent_answered_and_written(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_delivery_shows_what_was_sent_answered_and_written() {
    on_postgres(
        "crm console detail",
        a_delivery_shows_what_was_sent_answered_and_written,
    )
    .await;
}

/// Signed bodies the parser refuses: a number beyond `f64` in a call, and
/// the `data` of an event this version does not know nested deeper than
/// 128 levels. (delivery id, event, body)
fn refused_bodies() -> Vec<(&'static str, &'static str, String)> {
    let deep = format!(
        r#"{{"id":"evt_deep","event":"call.summarized","created_at":"{CREATED_AT}","data":{{"a":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    vec![
        (
            "dlv_big_number",
            "call.uploaded",
            format!(
                r#"{{"id":"evt_big","event":"call.uploaded","created_at":"{CREATED_AT}","data":{{"callId":"c","duration":1e400}}}}"#
            ),
        ),
        ("dlv_deep", "call.summarized", deep),
    ]
}

async fn a_verified_body_the_parser_refuses_is_kept_to_see(database: Database) {
    let app = start(config_on(database)).await;
    let (http, addr) = (Http::new(), app.addr());
    for (delivery_id, event, body) in refused_bodies() {
        let delivery = SignedDelivery::builder(body.clone())
            .event(event)
            .delivery_id(delivery_id)
            .sign(SECRET);
        let reply = http.deliver(addr, &delivery).await;
        assert_eq!(
            reply.rejection(),
            Some("malformed_envelope"),
            "{delivery_id}"
        );
        let path = format!("/api/deliveries/{delivery_id}");
        let detail = eventually("the refused delivery in the log", || async {
            let reply = http.get(addr, &path).await;
            (reply.status == StatusCode::OK).then(|| reply.json())
        })
        .await;
        assert_eq!(detail["body"], body.as_str(), "{delivery_id}: kept as sent");
        assert_eq!(
            detail["event"], event,
            "the refused delivery names its event"
        );
        let event_id = if delivery_id == "dlv_big_number" {
            "evt_big"
        } else {
            "evt_deep"
        };
        assert_eq!(detail["eventId"], event_id, "and its event id");
        assert_eq!(detail["verified"], true);
        assert_eq!(detail["outcome"], "rejected");
        assert_eq!(detail["reason"], "malformed_envelope");
        assert_eq!(detail["inbox"], Value::Null, "never stored");
        assert_eq!(detail["answer"]["status"], 400);
        assert_eq!(
            detail["answer"]["headers"]["x-kendo-webhook-rejection"],
            "malformed_envelope"
        );
        let html = http
            .get(addr, &format!("/deliveries/{delivery_id}"))
            .await
            .text();
        assert!(html.contains("Replay this body"), "{delivery_id}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_verified_body_the_parser_refuses_is_kept_to_see() {
    let (_dir, database) = sqlite();
    a_verified_body_the_parser_refuses_is_kept_to_see(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_verified_body_the_parser_refuses_is_kept_to_see() {
    on_postgres(
        "crm console refused body",
        a_verified_body_the_parser_refuses_is_kept_to_see,
    )
    .await;
}

// --------------------------------------------------------------- actions

/// Runs one statement on the app's database, as an operator's `psql` or
/// `sqlite3` would.
async fn execute(database: &Database, sql: &str) -> u64 {
    match database {
        Database::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).expect("the app's database");
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute(sql, []).expect("the statement runs") as u64
        }
        Database::Postgres(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client.execute(sql, &[]).await.expect("the statement runs")
        }
    }
}

/// The app without its own worker, and a worker on the same inbox whose
/// CRM is down (every attempt fails, one attempt allowed: the row dies)
/// until `up` is set.
struct Console {
    app: crm_ingest::app::Running,
    worker: Option<kendo_webhooks_inbox::WorkerHandle>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    database: Database,
}

impl Console {
    async fn start(database: Database) -> Self {
        let mut config = config_on(database.clone());
        config.run_worker = false;
        let app = start(config).await;
        let storage = crm_ingest::storage::Storage::open(&database)
            .await
            .expect("the tables");
        let inbox = match &database {
            Database::Sqlite(path) => kendo_webhooks_inbox::Inbox::open_sqlite(path).await,
            Database::Postgres(url) => kendo_webhooks_inbox::Inbox::connect_postgres(url).await,
        }
        .expect("the inbox");
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let up = std::sync::Arc::clone(&up);
            inbox
                .worker(move |delivery: kendo_webhooks::Delivery| {
                    let storage = storage.clone();
                    let up = up.load(std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if !up {
                            return Err("the CRM is down".to_owned());
                        }
                        storage
                            .project(&delivery)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                })
                .max_attempts(1)
                .poll_interval(std::time::Duration::from_millis(20))
                .spawn()
        };
        Self {
            app,
            worker: Some(worker),
            up,
            database,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.app.addr()
    }

    fn crm_up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown().await;
        }
        self.app.shutdown().await;
    }
}

/// Waits until the inbox row of `delivery_id` is in `state`.
async fn inbox_state(http: &Http, addr: std::net::SocketAddr, delivery_id: &str, state: &str) {
    let path = format!("/api/deliveries/{delivery_id}");
    eventually(&format!("{delivery_id} {state}"), || async {
        let reply = http.get(addr, &path).await;
        (reply.status == StatusCode::OK && reply.json()["inbox"]["state"] == state).then_some(())
    })
    .await;
}

async fn dead_rows_are_requeued_and_done_events_replayed_from_the_page(database: Database) {
    let console = Console::start(database).await;
    let (http, addr) = (Http::new(), console.addr());
    for (event_id, delivery_id) in [("evt_a", "dlv_a"), ("evt_b", "dlv_b"), ("evt_c", "dlv_c")] {
        let delivery = signed("call.uploaded", event_id, delivery_id);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
        inbox_state(&http, addr, delivery_id, "dead").await;
    }
    let page = http.get(addr, "/deliveries/dlv_a").await.text();
    assert!(
        page.contains(r#"action="/api/inbox/evt_a/requeue""#),
        "a requeue button"
    );
    let dashboard = http.get(addr, "/").await.text();
    assert!(dashboard.contains(r#"action="/api/inbox/requeue?state=dead""#));

    console.crm_up();
    // A browser's form post from the page itself: same origin.
    let own = format!("http://{addr}");
    let browser = [
        ("origin", own.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("accept", "text/html,application/xhtml+xml"),
    ];
    let reply = post(&http, addr, "/api/inbox/evt_a/requeue", &browser).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply
        .text()
        .contains("Event evt_a handed to the worker again"));
    inbox_state(&http, addr, "dlv_a", "done").await;

    // The same from another site is refused, credentials or not.
    let forged = [("origin", "https://evil.example"), ("accept", "text/html")];
    let reply = post(&http, addr, "/api/inbox/requeue?state=dead", &forged).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let reply = post(&http, addr, "/api/inbox/requeue?state=dead", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({ "requeued": 2, "state": "dead" })
    );
    inbox_state(&http, addr, "dlv_b", "done").await;
    inbox_state(&http, addr, "dlv_c", "done").await;
    let reply = post(&http, addr, "/api/inbox/requeue?state=pending", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("state=\"pending\""));

    // A done row is not requeued: it is replayed, idempotently.
    let reply = post(&http, addr, "/api/inbox/evt_a/requeue", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("it is done"));
    let reply = post(&http, addr, "/api/inbox/evt_a/replay", &browser).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains("idempotent"));
    let reply = post(&http, addr, "/api/inbox/evt_a/replay", &[]).await;
    assert_eq!(
        reply.json(),
        serde_json::json!({ "replayed": "evt_a", "projection": "calls" })
    );
    let calls = http.array(addr, "/api/calls").await;
    assert_eq!(calls.len(), 3, "replaying wrote no second row: {calls:?}");
    let reply = post(&http, addr, "/api/inbox/evt_nowhere/replay", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // A kept body whose inbox row is gone (purged, or never stored) is
    // stored again from the log.
    execute(
        &console.database,
        "DELETE FROM kendo_inbox WHERE event_id = 'evt_c'",
    )
    .await;
    let page = http.get(addr, "/deliveries/dlv_c").await.text();
    assert!(page.contains("Replay this body"));
    let reply = post(&http, addr, "/api/deliveries/dlv_c/replay", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({ "replayed": "dlv_c", "eventId": "evt_c", "inbox": "stored" })
    );
    inbox_state(&http, addr, "dlv_c", "done").await;
    let reply = post(&http, addr, "/api/deliveries/dlv_c/replay", &[]).await;
    assert_eq!(reply.json()["inbox"], "duplicate");
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dead_rows_are_requeued_and_done_events_replayed_from_the_page() {
    let (_dir, database) = sqlite();
    dead_rows_are_requeued_and_done_events_replayed_from_the_page(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dead_rows_are_requeued_and_done_events_replayed_from_the_page() {
    on_postgres(
        "crm console actions",
        dead_rows_are_requeued_and_done_events_replayed_from_the_page,
    )
    .await;
}

async fn a_refused_body_is_replayed_only_once_this_build_accepts_it(database: Database) {
    let app = start(config_on(database)).await;
    let (http, addr) = (Http::new(), app.addr());
    let (delivery_id, event, body) = refused_bodies().remove(0);
    let delivery = SignedDelivery::builder(body)
        .event(event)
        .delivery_id(delivery_id)
        .sign(SECRET);
    assert_eq!(
        http.deliver(addr, &delivery).await.rejection(),
        Some("malformed_envelope")
    );
    let path = format!("/api/deliveries/{delivery_id}/replay");
    let reply = eventually("the refused body in the log", || async {
        let reply = post(&http, addr, &path, &[]).await;
        (reply.status != StatusCode::NOT_FOUND).then_some(reply)
    })
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["reason"], "malformed_envelope");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_body_is_replayed_only_once_this_build_accepts_it() {
    let (_dir, database) = sqlite();
    a_refused_body_is_replayed_only_once_this_build_accepts_it(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refused_body_is_replayed_only_once_this_build_accepts_it() {
    on_postgres(
        "crm console replay refused",
        a_refused_body_is_replayed_only_once_this_build_accepts_it,
    )
    .await;
}

// ------------------------------------------------------- search, filters

/// A signed `call.uploaded` with these fields.
fn call(event_id: &str, agent_name: &str, member: &str, is_test: bool) -> SignedDelivery {
    let mut data = serde_json::json!({
        "callId": format!("call_{event_id}"),
        "agentId": format!("agent_{}", agent_name.split(' ').next().unwrap_or("x").to_lowercase()),
        "agentName": agent_name,
        "userId": "user_1",
        "teamMemberUserId": member,
        "duration": 61,
        "aiScore": 80,
        "timestamp": CREATED_AT,
    });
    if is_test {
        data["_isTest"] = Value::Bool(true);
    }
    let body = serde_json::json!({
        "id": event_id, "event": "call.uploaded", "created_at": CREATED_AT, "data": data,
    });
    SignedDelivery::builder(serde_json::to_vec(&body).unwrap())
        .event("call.uploaded")
        .delivery_id(format!("dlv_{event_id}"))
        .sign(SECRET)
}

fn ids(rows: &[Value], field: &str) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn anything_is_found_by_substring_and_filtered(database: Database) {
    let app = start(config_on(database)).await;
    let (http, addr) = (Http::new(), app.addr());
    for delivery in [
        call("evt_s1", "Ada Lovelace", "member_grace", false),
        call("evt_s2", "Grace Hopper", "member_ada", false),
        call("evt_s3", "Alan Turing", "member_alan", false),
        call("evt_s4", "Ada Lovelace", "member_x", true),
    ] {
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    }
    let training = signed("ai.training.completed", "evt_st", "dlv_st");
    assert_eq!(http.deliver(addr, &training).await.status, StatusCode::OK);
    let forged = SignedDelivery::builder(&b"{}"[..])
        .event("call.uploaded")
        .delivery_id("dlv_forged_ada")
        .sign("whsec_wrong");
    assert_eq!(
        http.deliver(addr, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    rows(&http, addr, "/api/calls?test=include", 4).await;
    rows(&http, addr, "/api/trainings", 1).await;
    rows(&http, addr, "/api/deliveries", 5).await;
    rows(&http, addr, "/api/deliveries?verified=false", 1).await;

    // Any part of an agent's name or a team member, any case.
    let found = http.array(addr, "/api/calls?q=ADA").await;
    assert_eq!(
        ids(&found, "eventId"),
        ["evt_s1", "evt_s2"],
        "tests excluded"
    );
    let found = http.array(addr, "/api/calls?q=ovel&test=include").await;
    assert_eq!(ids(&found, "eventId"), ["evt_s1", "evt_s4"]);
    let found = http.array(addr, "/api/calls?q=ovel&test=only").await;
    assert_eq!(ids(&found, "eventId"), ["evt_s4"]);
    // Two characters: below a trigram, still found.
    let found = http.array(addr, "/api/calls?q=Tu").await;
    assert_eq!(ids(&found, "eventId"), ["evt_s3"]);
    // Ids anywhere, `%` and `_` literal, quotes harmless.
    let found = http.array(addr, "/api/calls?q=all_evt_s").await;
    assert_eq!(found.len(), 3);
    assert!(http.array(addr, "/api/calls?q=%25").await.is_empty());
    assert!(http.array(addr, "/api/calls?q=%22ada%22").await.is_empty());
    let found = http.array(addr, "/api/trainings?q=sales%20agent").await;
    assert_eq!(ids(&found, "eventId"), ["evt_st"]);
    // The log: ids, event, and the raw body (where the agent's name is).
    let found = http.array(addr, "/api/deliveries?q=grace%20hopper").await;
    assert_eq!(ids(&found, "deliveryId"), ["dlv_evt_s2"]);
    let found = http
        .array(addr, "/api/deliveries?event=ai.training.completed")
        .await;
    assert_eq!(ids(&found, "deliveryId"), ["dlv_st"]);
    let found = http
        .array(addr, "/api/deliveries?outcome=accepted&q=s3")
        .await;
    assert_eq!(ids(&found, "deliveryId"), ["dlv_evt_s3"]);
    // Unverified attempts, listed apart.
    let found = http.array(addr, "/api/deliveries?verified=false").await;
    assert_eq!(ids(&found, "deliveryId"), ["dlv_forged_ada"]);
    assert_eq!(found[0]["verified"], false);
    assert_eq!(found[0]["reason"], "invalid_signature");
    let found = http
        .array(addr, "/api/deliveries?verified=false&q=nomatch")
        .await;
    assert!(found.is_empty());

    // Dates: whole days (UTC unless CRM_TIME_ZONE), or RFC 3339.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let day = |d: jiff::civil::Date| d.to_string();
    let path = format!("/api/calls?from={}&to={}", day(today), day(today));
    assert_eq!(http.array(addr, &path).await.len(), 3);
    let path = format!("/api/calls?from={}", day(today.tomorrow().unwrap()));
    assert!(http.array(addr, &path).await.is_empty());
    let path = format!("/api/calls?to={}", day(today.yesterday().unwrap()));
    assert!(http.array(addr, &path).await.is_empty());
    let path = "/api/deliveries?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00%2B02:00";
    assert_eq!(http.array(addr, path).await.len(), 5);

    // Pages carry every filter.
    let page = http.get(addr, "/api/calls?q=ada&limit=1").await;
    let link = page.header("link").expect("a next page").to_owned();
    assert!(link.contains("q=ada") && link.contains("limit=1"), "{link}");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let second = http.array(addr, &next).await;
    assert_eq!(second.len(), 1);
    assert_ne!(second[0]["eventId"], page.json()[0]["eventId"]);

    // The dashboard's box.
    let html = http.get(addr, "/?q=hopper").await.text();
    assert!(html.contains("call_evt_s2"), "the call");
    assert!(
        html.contains(r#"href="/deliveries/dlv_evt_s2""#),
        "the delivery"
    );

    // Bad input: 400 with a reason.
    for (path, says) in [
        ("/api/calls?outcome=accepted", "outcome= does not apply"),
        ("/api/deliveries?test=only", "test= does not apply"),
        ("/api/calls?from=yesterday", "RFC 3339"),
        ("/api/calls?from=2026-03-06&to=2026-03-05", "after"),
        ("/api/deliveries?verified=maybe", "true or false"),
        ("/api/calls?verified=false", "applies to /api/deliveries"),
        ("/api/calls?format=xml", "json or csv"),
        ("/api/deliveries?outcome=%3Cb%3E", "expected a name"),
        ("/api/calls?limit=0", "limit"),
    ] {
        let reply = http.get(addr, path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{path}: {error}");
    }
    let long = format!("/api/calls?q={}", "a".repeat(201));
    assert_eq!(http.get(addr, &long).await.status, StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_anything_is_found_by_substring_and_filtered() {
    let (_dir, database) = sqlite();
    anything_is_found_by_substring_and_filtered(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_anything_is_found_by_substring_and_filtered() {
    on_postgres(
        "crm console search",
        anything_is_found_by_substring_and_filtered,
    )
    .await;
}

// ----------------------------------------------------------------- export

async fn csv_exports_every_matching_row_safely(database: Database) {
    let app = start(config_on(database.clone())).await;
    let (http, addr) = (Http::new(), app.addr());
    // Awkward values: a comma, quotes, a newline, formulas.
    let awkward = [
        (
            "evt_c1",
            "Doe, \"Jo\"\nsecond line",
            "=HYPERLINK(\"http://evil\",\"x\")",
        ),
        ("evt_c2", "+SUM(A1:A9)", "-2+3"),
        ("evt_c3", "@cmd", "plain"),
    ];
    for (event_id, name, member) in awkward {
        let delivery = call(event_id, name, member, false);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    }
    rows(&http, addr, "/api/calls", 3).await;
    rows(&http, addr, "/api/deliveries", 3).await;
    let reply = http.get(addr, "/api/calls?format=csv").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/csv"));
    assert!(reply
        .header("content-disposition")
        .unwrap()
        .contains("calls.csv"));
    let mut reader = csv::Reader::from_reader(reply.body.as_ref());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, crm_ingest::export::CALL_FIELDS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let by_event = |event_id: &str| {
        records
            .iter()
            .find(|r| &r[column("eventId")] == event_id)
            .unwrap()
            .clone()
    };
    let c1 = by_event("evt_c1");
    assert_eq!(
        &c1[column("agentName")],
        "Doe, \"Jo\"\nsecond line",
        "RFC 4180 round trip"
    );
    assert_eq!(
        &c1[column("teamMemberUserId")],
        "'=HYPERLINK(\"http://evil\",\"x\")"
    );
    assert_eq!(&c1[column("aiScore")], "80.0", "a number stays a number");
    let c2 = by_event("evt_c2");
    assert_eq!(&c2[column("agentName")], "'+SUM(A1:A9)");
    assert_eq!(&c2[column("teamMemberUserId")], "'-2+3");
    assert_eq!(&by_event("evt_c3")[column("agentName")], "'@cmd");
    assert_eq!(&c1[column("isTest")], "false");
    // The raw text quotes the cell with the newline (RFC 4180).
    assert!(reply.text().contains("\"Doe, \"\"Jo\"\"\nsecond line\""));

    // Filters apply; deliveries and unverified attempts export too.
    let reply = http.get(addr, "/api/calls?format=csv&q=evt_c2").await;
    assert_eq!(reply.text().lines().count(), 2, "{}", reply.text());
    let reply = http.get(addr, "/api/deliveries?format=csv").await;
    let mut reader = csv::Reader::from_reader(reply.body.as_ref());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        crm_ingest::export::DELIVERY_FIELDS
    );
    assert_eq!(reader.records().count(), 3);
    let reply = http
        .get(addr, "/api/deliveries?format=csv&verified=false")
        .await;
    assert_eq!(reply.text().lines().count(), 1, "the header only");

    // Every row, not one page: more rows than a page or a chunk.
    let storage = crm_ingest::storage::Storage::open(&database).await.unwrap();
    let many: Vec<kendo_webhooks::Delivery> = (0..2_345)
        .map(|i| {
            let delivery = call(&format!("evt_bulk_{i:05}"), "Bulk Agent", "member", false);
            kendo_webhooks::Delivery::parse(
                delivery.body().clone(),
                &format!("dlv_bulk_{i}"),
                "call.uploaded",
            )
            .unwrap()
        })
        .collect();
    for result in storage.project_batch(&many).await {
        result.unwrap();
    }
    let reply = http.get(addr, "/api/calls?format=csv&q=bulk").await;
    let mut reader = csv::Reader::from_reader(reply.body.as_ref());
    let events: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(events.len(), 2_345);
    let mut unique = events.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 2_345, "each row once");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_csv_exports_every_matching_row_safely() {
    let (_dir, database) = sqlite();
    csv_exports_every_matching_row_safely(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_csv_exports_every_matching_row_safely() {
    on_postgres("crm console csv", csv_exports_every_matching_row_safely).await;
}

// ------------------------------------------------------------ local time

#[test]
fn an_unknown_time_zone_is_refused_at_start_naming_the_variable() {
    let lookup = |zone: &'static str| {
        move |name: &str| match name {
            "KENDO_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
            "CRM_TIME_ZONE" => Some(zone.to_owned()),
            _ => None,
        }
    };
    let error = crm_ingest::config::AppConfig::from_lookup(lookup("Mars/Olympus_Mons"))
        .expect_err("refused")
        .to_string();
    assert!(error.contains("CRM_TIME_ZONE"), "{error}");
    assert!(error.contains("IANA time zone"), "{error}");
    let config = crm_ingest::config::AppConfig::from_lookup(lookup("Asia/Tokyo")).unwrap();
    assert_eq!(config.time_zone.iana_name(), Some("Asia/Tokyo"));
}

async fn the_console_speaks_the_configured_time_zone(database: Database) {
    let mut config = config_on(database);
    let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    config.time_zone = tokyo.clone();
    let app = start(config).await;
    let (http, addr) = (Http::new(), app.addr());
    let delivery = call("evt_tz", "Ada Lovelace", "m", false);
    assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    rows(&http, addr, "/api/calls", 1).await;
    let html = http.get(addr, "/").await.text();
    assert!(
        html.contains("Asia/Tokyo (+09:00)"),
        "the header says the zone"
    );
    assert!(
        html.contains("since 00:00 Asia/Tokyo"),
        "the cards say their period"
    );
    // A date means that day in Tokyo.
    let today = jiff::Timestamp::now().to_zoned(tokyo).date();
    let path = format!("/api/calls?from={today}&to={today}");
    assert_eq!(http.array(addr, &path).await.len(), 1);
    let page = http.get(addr, "/deliveries/dlv_evt_tz").await.text();
    assert!(page.contains("+09:00"), "attempt times in Tokyo time");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_console_speaks_the_configured_time_zone() {
    let (_dir, database) = sqlite();
    the_console_speaks_the_configured_time_zone(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_console_speaks_the_configured_time_zone() {
    on_postgres(
        "crm console time zone",
        the_console_speaks_the_configured_time_zone,
    )
    .await;
}

// ------------------------------------------------- for the people using it

async fn business_first_then_the_pipeline_with_what_to_do(database: Database) {
    let app = start(config_on(database)).await;
    let (http, addr) = (Http::new(), app.addr());
    for delivery in [
        call("evt_p1", "Ada Lovelace", "m1", false),
        call("evt_p2", "Ada Lovelace", "m2", false),
        call("evt_p3", "Grace Hopper", "m3", false),
    ] {
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    }
    let forged = SignedDelivery::builder(&b"{}"[..])
        .event("call.uploaded")
        .delivery_id("dlv_forged")
        .sign("whsec_wrong");
    assert_eq!(
        http.deliver(addr, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    rows(&http, addr, "/api/calls", 3).await;
    let html = eventually("the rejection in the log", || async {
        let html = http.get(addr, "/").await.text();
        html.contains("dlv_forged").then_some(html)
    })
    .await;
    let at = |text: &str| {
        html.find(text)
            .unwrap_or_else(|| panic!("{text:?} on the page"))
    };
    assert!(at("Recent calls") < at("Pipeline health"), "business first");
    assert!(at("Pipeline health") < at("Delivery log"));
    assert!(html.contains("The signature does not match the body"));
    assert!(
        html.contains("Compare KENDO_WEBHOOK_SECRET"),
        "the action to take"
    );
    assert!(
        html.contains(r#"href="/agents/Ada%20Lovelace""#),
        "agents link to their page"
    );
    assert!(html.contains(r#"<main id="live" data-refresh="15">"#));
    assert!(html.contains(r#"<script src="/assets/console.js" defer>"#));

    let page = http.get(addr, "/agents/Ada%20Lovelace").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let page = page.text();
    assert!(page.contains("Average AI score per day"), "the trend");
    assert!(page.contains("call_evt_p1") && page.contains("call_evt_p2"));
    assert!(!page.contains("call_evt_p3"), "another agent's call");
    assert!(
        page.contains("<polyline") || page.contains("<path"),
        "a line drawn"
    );
    let missing = http.get(addr, "/agents/Nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let script = http.get(addr, "/assets/console.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.text().contains("visibilityState"));
    let csp = script.header("content-security-policy").unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'unsafe-inline'"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_business_first_then_the_pipeline_with_what_to_do() {
    let (_dir, database) = sqlite();
    business_first_then_the_pipeline_with_what_to_do(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_business_first_then_the_pipeline_with_what_to_do() {
    on_postgres(
        "crm console business first",
        business_first_then_the_pipeline_with_what_to_do,
    )
    .await;
}

/// Search latency on Postgres at `CRM_SEARCH_ROWS` calls (default
/// 1,000,000), written straight into the table (with its trigram index):
/// `cargo test -p crm-ingest --test console postgres_search_at_size --
/// --ignored --nocapture`. Prints figures; asserts only that each search
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes of inserting"]
async fn postgres_search_at_size() {
    let Some(pg) = PostgresServer::start_or_skip("crm console search at size") else {
        return;
    };
    let rows: i64 = std::env::var("CRM_SEARCH_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let database = Database::Postgres(pg.url());
    let storage = crm_ingest::storage::Storage::open(&database).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let started = std::time::Instant::now();
    client
        .execute(
            "INSERT INTO calls (event_id, call_id, agent_id, agent_name, user_id,
                 team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
             SELECT 'evt-' || i, 'call-' || i, 'agent_' || (i % 12),
                 (ARRAY['Ana Silva','Ben Okafor','Chen Wei','Dana Levi','Eli Novak','Fatima Zahra',
                        'Gus Moreau','Hana Sato','Ivan Petrov','Jade Kim','Kofi Mensah','Lena Vogel'])[1 + i % 12],
                 'user_1', 'member_' || (i % 40), 60, i % 100, NULL, i % 50 = 0,
                 1772712000000 + i
             FROM generate_series(1, $1::bigint) AS i",
            &[&rows],
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE calls").await.unwrap();
    println!(
        "{rows} calls inserted and analyzed in {:.1?}",
        started.elapsed()
    );
    for q in ["Hana Sato", "call-123456", "nomatchxyz", "Ha", "zz"] {
        let filters = crm_ingest::search::Filters::text(q);
        let mut best = std::time::Duration::MAX;
        let mut found = 0;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            found = crm_ingest::search::calls(&storage, &filters, None, 101)
                .await
                .unwrap()
                .len();
            best = best.min(started.elapsed());
        }
        println!("q={q:?}: {found} rows of a page, best of 3 {best:.1?}");
    }
}
