//! The CRM app end to end: it runs in-process on `127.0.0.1:0` on a
//! temporary SQLite file (or a real Postgres, started by the test), and
//! signed deliveries go to it over real HTTP, as Kendo sends them.
//!
//! (About 900 lines, one file on purpose: the app end to end on both backends. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)

mod common;
use kendo_test_support::postgres_server;
#[cfg(feature = "redis")]
use kendo_test_support::redis_server;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::*;
use crm_ingest::config::{AppConfig, ConfigError, Database};
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use kendo_webhooks::SignedDelivery;
use kendo_webhooks_inbox::INBOX_HEADER;
use serde_json::{json, Value};

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
    assert_eq!(text.len(), "2026-03-05T12:00:00.000Z".len(), "{text:?}");
    assert!(text.ends_with('Z'), "{text:?}");
}

/// Sends a call, a training, a test call and a duplicate to an app on
/// `database`, and checks what is stored, projected and logged.
async fn stores_and_projects(database: Database) {
    let app = start(config_on(database)).await;
    let http = Http::new();
    let addr = app.addr();

    let call = signed("call.uploaded", "evt_call_1", "dlv_call_1");
    let reply = http.deliver(addr, &call).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header(INBOX_HEADER), Some("stored"));
    let training = signed("ai.training.completed", "evt_training_1", "dlv_training_1");
    assert_eq!(http.deliver(addr, &training).await.status, StatusCode::OK);
    let test = test_delivery("evt_test_1", "dlv_test_1");
    assert_eq!(http.deliver(addr, &test).await.status, StatusCode::OK);
    let retry = http.deliver(addr, &call).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(retry.is_duplicate(), "{:?}", retry.rejection());

    let calls = rows(&http, addr, "/api/calls", 1).await;
    assert_eq!(calls[0]["eventId"], "evt_call_1");
    assert_eq!(calls[0]["aiScore"].as_f64(), Some(87.0));
    let trainings = rows(&http, addr, "/api/trainings", 1).await;
    assert_eq!(trainings[0]["trainingId"], "training_evt_training_1");
    let tests = rows(&http, addr, "/api/calls?test=only", 1).await;
    assert_eq!(tests[0]["eventId"], "evt_test_1");
    assert_eq!(tests[0]["isTest"], true);
    assert_eq!(http.array(addr, "/api/calls?test=include").await.len(), 2);

    let health = eventually("the inbox to drain", || async {
        let health = http.health(addr).await;
        (health["inbox"]["backlog"] == 0 && health["inbox"]["done"] == 3).then_some(health)
    })
    .await;
    let counts = &health["counts"];
    assert_eq!(counts["calls"], 1, "tests never count as calls: {health}");
    assert_eq!(counts["testCalls"], 1, "{health}");
    assert_eq!(counts["trainings"], 1, "{health}");
    let dup = log_entries(&http, addr, "dlv_call_1", 2).await;
    assert_eq!(dup[0]["outcome"], "duplicate");
    assert_eq!(dup[1]["outcome"], "accepted");
    dashboard_reads_every_table(&http, addr).await;
    app.shutdown().await;
}

/// The dashboard's queries on this backend: every chart has data, the
/// tables show the real call and the test delivery apart, a delivery
/// refused three times is one log row with three attempts, and the search
/// finds a delivery by the beginning of its id.
async fn dashboard_reads_every_table(http: &Http, addr: std::net::SocketAddr) {
    for _ in 0..3 {
        let reply = http.deliver(addr, &forged(7)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // The log writer commits in batches: wait for all three attempts.
    let html = eventually("the three forged attempts in the log", || async {
        let html = http.get(addr, "/").await.text();
        let complete = html
            .split("<tr>")
            .any(|row| row.contains("forged-00007") && row.contains("\">3</td>"));
        complete.then_some(html)
    })
    .await;
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for empty in [
        "No deliveries in the last hour",
        "Nothing rejected",
        "No scored calls yet",
        "No samples yet",
    ] {
        assert!(!html.contains(empty), "a chart without data: {empty}");
    }
    assert!(html.contains("invalid_signature"), "the reason is charted");
    let (real, tests) = html.split_once("Test deliveries").expect("a test section");
    assert!(real.contains("call_evt_call_1"), "the real call is listed");
    assert!(
        !real.contains("call_evt_test_1"),
        "the test call is not with real ones"
    );
    assert!(
        tests.contains("call_evt_test_1"),
        "the test call is listed apart"
    );
    let row = html
        .split("<tr>")
        .filter(|row| row.contains("forged-00007"))
        .collect::<Vec<_>>();
    assert_eq!(row.len(), 1, "one row for the three attempts: {row:?}");
    assert!(
        row[0].contains(">3</td>"),
        "the row counts three attempts: {}",
        row[0]
    );

    let found = http.get(addr, "/?q=dlv_call").await.text();
    let results = found
        .split_once("Search results")
        .and_then(|(_, rest)| rest.split_once("</section>"))
        .map(|(results, _)| results)
        .expect("a results section");
    assert!(results.contains("dlv_call_1"), "{results}");
    assert!(!results.contains("dlv_training_1"), "{results}");
    let none = http.get(addr, "/?q=nothing%25here").await.text();
    assert!(none.contains("Nothing matches"), "a literal %: no match");

    let rejected = http.get(addr, "/?outcome=rejected").await.text();
    assert!(
        rejected.contains(r#"<a class="on" href="?outcome=rejected">"#),
        "the filter in use is marked"
    );
    assert!(html.contains(r#"<a class="on" href="?">all</a>"#));
    let log = rejected.split_once("Delivery log").expect("the log").1;
    assert!(
        log.contains("forged-00007"),
        "unverified rejections are rejected"
    );
    assert!(
        !log.contains("dlv_call_1"),
        "accepted ones are filtered out"
    );
    let duplicates = http.get(addr, "/?outcome=duplicate").await.text();
    let log = duplicates.split_once("Delivery log").expect("the log").1;
    assert!(log.contains("dlv_call_1"), "the retry is a duplicate");
    assert!(!log.contains("forged-00007"), "rejections are filtered out");
    let bad = http.get(addr, "/?outcome=lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sqlite_stores_and_projects() {
    let (_dir, db) = temp_db();
    stores_and_projects(Database::Sqlite(db)).await;
}

#[tokio::test]
async fn postgres_stores_and_projects() {
    let Some(pg) =
        postgres_server::PostgresServer::start_or_skip("crm postgres_stores_and_projects")
    else {
        return;
    };
    stores_and_projects(Database::Postgres(pg.url())).await;
}

#[tokio::test]
async fn known_events_are_projected_with_kendos_field_names_and_types() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let call = signed("call.uploaded", "evt_call_1", "dlv_call_1");
    assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    // A score Kendo did not send as a number string reads as null.
    let odd = br#"{"id":"evt_call_2","event":"call.uploaded","created_at":"2026-03-05T12:01:00Z",
        "data":{"callId":"c2","agentName":"Night Agent","duration":12,"aiScore":"n/a"}}"#;
    let odd = SignedDelivery::builder(&odd[..])
        .event("call.uploaded")
        .delivery_id("dlv_call_2")
        .sign(SECRET);
    assert_eq!(http.deliver(addr, &odd).await.status, StatusCode::OK);

    let calls = rows(&http, addr, "/api/calls", 2).await;
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
    assert_eq!(first["aiScore"].as_f64(), Some(87.0));
    assert_eq!(first["timestamp"], CREATED_AT);
    assert_eq!(first["isTest"], false);
    let second = calls
        .iter()
        .find(|c| c["eventId"] == "evt_call_2")
        .expect("evt_call_2");
    assert_eq!(second["aiScore"], Value::Null);
    assert_eq!(second["agentId"], Value::Null);

    let logged = log_entries(&http, addr, "dlv_call_1", 1).await;
    assert_eq!(
        logged[0],
        json!({
            "deliveryId": "dlv_call_1", "eventId": "evt_call_1", "event": "call.uploaded",
            "outcome": "accepted", "reason": null, "status": 200,
            "secretLabel": "current", "latencyMs": logged[0]["latencyMs"],
            "receivedAt": logged[0]["receivedAt"],
        })
    );
    assert!(logged[0]["latencyMs"].as_f64().is_some());
    app.shutdown().await;
}

#[tokio::test]
async fn a_tampered_body_gets_401_is_counted_as_a_rejection_and_stores_nothing() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let reply = http.deliver(addr, &forged(1)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.rejection(), Some("invalid_signature"));

    let rejections = rows(&http, addr, "/api/rejections", 1).await;
    assert_eq!(rejections[0]["reason"], "invalid_signature");
    assert_eq!(rejections[0]["count"], 1);
    assert_eq!(rejections[0]["status"], 401);
    assert_eq!(rejections[0]["lastDeliveryId"], "forged-00001");
    assert!(http.array(addr, "/api/deliveries").await.is_empty());
    let health = http.health(addr).await;
    assert_eq!(health["inbox"]["done"], 0, "{health}");
    assert_eq!(health["counts"]["rejections"], 1, "{health}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_event_gets_200_is_logged_and_creates_no_row() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let unknown = signed("deal.won", "evt_unknown", "dlv_unknown");
    assert_eq!(http.deliver(addr, &unknown).await.status, StatusCode::OK);
    eventually("the unknown event handled", || async {
        (http.health(addr).await["inbox"]["done"] == 1).then_some(())
    })
    .await;
    assert!(http.array(addr, "/api/calls?test=include").await.is_empty());
    assert!(http
        .array(addr, "/api/trainings?test=include")
        .await
        .is_empty());
    let entries = log_entries(&http, addr, "dlv_unknown", 1).await;
    assert_eq!(entries[0]["event"], "deal.won");
    assert_eq!(entries[0]["outcome"], "accepted");
    app.shutdown().await;
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
    first.shutdown().await;

    // A new process state: the layer's LRU is empty, only the database remains.
    let second = start(config(&db)).await;
    let reply = http.deliver(second.addr(), &call).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.rejection(), None, "the LRU cannot know it");
    assert_eq!(
        reply.header(INBOX_HEADER),
        Some("duplicate"),
        "the inbox does"
    );
    assert_eq!(http.array(second.addr(), "/api/calls").await.len(), 1);
    let entries = log_entries(&http, second.addr(), "dlv_restart", 2).await;
    assert_eq!(
        entries[1]["outcome"], "accepted",
        "the log survives the restart"
    );
    assert_eq!(
        (&entries[0]["outcome"], &entries[0]["reason"]),
        (&"duplicate".into(), &"inbox_duplicate".into()),
        "the database's duplicate is logged as one: {}",
        entries[0]
    );
    second.shutdown().await;
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
    let health = http.health(first.addr()).await;
    assert_eq!(health["inbox"]["pending"], 2, "{health}");
    assert!(http.array(first.addr(), "/api/calls").await.is_empty());
    first.shutdown().await;

    let second = start(config(&db)).await;
    let calls = rows(&http, second.addr(), "/api/calls", 1).await;
    assert_eq!(calls[0]["eventId"], "evt_pending_call");
    let trainings = rows(&http, second.addr(), "/api/trainings", 1).await;
    assert_eq!(trainings[0]["eventId"], "evt_pending_training");
    second.shutdown().await;
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
    let body = kendo_webhooks::TestDelivery::example("call.uploaded")
        .event_id("evt_new_secret")
        .created_at(CREATED_AT)
        .body();
    let new = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_new_secret")
        .sign("whsec_new_secret");
    assert_eq!(http.deliver(app.addr(), &new).await.status, StatusCode::OK);

    let old = log_entries(&http, app.addr(), "dlv_old_secret", 1).await;
    assert_eq!(old[0]["secretLabel"], "previous");
    let new = log_entries(&http, app.addr(), "dlv_new_secret", 1).await;
    assert_eq!(new[0]["secretLabel"], "current");
    app.shutdown().await;
}

#[tokio::test]
async fn the_verified_delivery_log_keeps_only_its_newest_entries() {
    let (_dir, db) = temp_db();
    let mut small = config(&db);
    small.log_keep = 20;
    let app = start(small).await;
    let http = Http::new();
    let addr = app.addr();

    let sent = 30;
    for i in 0..sent {
        let call = signed(
            "call.uploaded",
            &format!("evt_keep_{i}"),
            &format!("dlv_keep_{i:02}"),
        );
        assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    }
    let newest = format!("dlv_keep_{:02}", sent - 1);
    let log = eventually("the newest entry in the log", || async {
        let log = http.array(addr, "/api/deliveries").await;
        log.first()
            .is_some_and(|e| e["deliveryId"] == newest.as_str())
            .then_some(log)
    })
    .await;
    let ids: Vec<&str> = log
        .iter()
        .filter_map(|e| e["deliveryId"].as_str())
        .collect();
    let expected: Vec<String> = (sent - 20..sent)
        .rev()
        .map(|i| format!("dlv_keep_{i:02}"))
        .collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    app.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_from_memory_without_business_data_and_503_once_the_file_is_gone() {
    let (dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let call = signed("call.uploaded", "evt_health_1", "dlv_health_1");
    assert_eq!(http.deliver(app.addr(), &call).await.status, StatusCode::OK);

    let reply = http.get_with(app.addr(), "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!({ "status": "ok" }));

    // The data directory removed under the running app (issue 17, #3):
    // deliveries are refused, never answered 200 into an unlinked file, and
    // health turns 503 (the next commit or write probe notices).
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let call = signed("call.uploaded", "evt_health_2", "dlv_health_2");
    let reply = http.deliver(app.addr(), &call).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let reply = eventually("healthz turns 503", || async {
        let reply = http.get_with(app.addr(), "/healthz", None).await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert_eq!(reply.json(), serde_json::json!({ "status": "unavailable" }));
    let status = http.get_json(app.addr(), "/api/status").await;
    assert_eq!(status["status"], "unavailable", "{status}");
    assert!(
        status["lastFailure"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("removed")),
        "{status}"
    );
    app.shutdown().await;
    drop(dir);
}

#[tokio::test]
async fn done_inbox_rows_are_purged_after_the_retention_and_calls_are_kept() {
    let (_dir, db) = temp_db();
    let mut config = config(&db);
    config.inbox_retention = std::time::Duration::from_millis(1);
    let app = start(config).await;
    let http = Http::new();
    let addr = app.addr();
    for i in 0..3 {
        let call = signed(
            "call.uploaded",
            &format!("evt_ret_{i}"),
            &format!("dlv_ret_{i}"),
        );
        assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    }
    let status = eventually(
        "the calls projected and their inbox rows purged",
        || async {
            let status = http.health(addr).await;
            // Projected, settled (no backlog) and purged (no done rows):
            // the projection commits before its rows are settled, so the
            // backlog is part of the condition, not asserted after it.
            let inbox = &status["inbox"];
            (status["counts"]["calls"] == 3 && inbox["backlog"] == 0 && inbox["done"] == 0)
                .then_some(status)
        },
    )
    .await;
    assert_eq!(status["inbox"]["dead"], 0, "{status}");
    assert_eq!(http.array(addr, "/api/calls").await.len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_shows_agents_with_their_names_escaped() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let call = signed("call.uploaded", "evt_dash", "dlv_dash");
    assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    let hostile = br#"{"id":"evt_hostile","event":"ai.training.completed","created_at":"2026-03-05T12:00:00Z",
        "data":{"trainingId":"t1","agentName":"<script>alert('x')</script> & \"Co\"","aiScore":"42.5"}}"#;
    let hostile = SignedDelivery::builder(&hostile[..])
        .event("ai.training.completed")
        .delivery_id("dlv_hostile")
        .sign(SECRET);
    assert_eq!(http.deliver(addr, &hostile).await.status, StatusCode::OK);
    rows(&http, addr, "/api/calls", 1).await;
    rows(&http, addr, "/api/trainings", 1).await;
    log_entries(&http, addr, "dlv_hostile", 1).await;

    let page = http.get(addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.headers[CONTENT_TYPE].to_str().expect("ASCII");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text();
    assert!(
        html.contains(r#"title="agent_1"><a href="/agents/Sales%20Agent">Sales Agent</a><"#),
        "the call's agent is shown by name, its id as the title"
    );
    assert!(
        html.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;Co&quot;"),
        "the hostile agent name is shown escaped"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "no markup from deliveries: the app's own script only"
    );
    assert!(html.contains(r#"<script src="/assets/console.js" defer>"#));
    assert!(html.contains("dlv_hostile"), "the delivery log is shown");
    app.shutdown().await;
}

/// Two replicas with their own databases share one real Redis: a copy of a
/// delivery sent to the second is answered as a duplicate by the layer
/// (Redis knew it) although the second replica's inbox never saw it.
#[cfg(feature = "redis")]
#[tokio::test]
async fn replicas_sharing_redis_answer_a_copy_as_a_duplicate() {
    use kendo_webhooks_redis::RedisStore;

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
    assert!(copy.is_duplicate(), "{:?}", copy.rejection());

    assert_eq!(http.health(b.addr()).await["inbox"]["done"], 0);
    let entries = log_entries(&http, b.addr(), "dlv_replicas", 1).await;
    assert_eq!(entries[0]["outcome"], "duplicate");
    rows(&http, a.addr(), "/api/calls", 1).await;
    a.shutdown().await;
    b.shutdown().await;
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

    let config = AppConfig::from_lookup(env(&[("KENDO_WEBHOOK_SECRET", "s3cr3t-value")]))
        .expect("a secret is enough");
    assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 3000)));
    assert_eq!(
        config.database,
        Database::Sqlite(PathBuf::from("crm.sqlite3"))
    );
    assert_eq!(config.admin_token, None);
    assert_eq!(config.limits, crm_ingest::config::ServerLimits::default());
    assert_eq!(config.limits.header_read_timeout.as_secs(), 5);
    assert_eq!(config.limits.request_timeout.as_secs(), 10);

    let config = AppConfig::from_lookup(env(&[
        ("KENDO_WEBHOOK_SECRET", "s3cr3t-value"),
        ("KENDO_WEBHOOK_SECRET_PREVIOUS", "old-s3cr3t"),
        ("CRM_ADDR", "0.0.0.0:8080"),
        ("CRM_DATABASE_URL", "postgres://crm:pa55word@db:5432/crm"),
        ("CRM_ADMIN_TOKEN", "t0ken-t0ken-t0ken-t0ken"),
        ("CRM_HEADER_READ_TIMEOUT_SECS", "2"),
        ("CRM_MAX_CONNECTIONS", "64"),
    ]))
    .expect("a full configuration");
    assert_eq!(config.addr, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert!(matches!(config.database, Database::Postgres(_)));
    assert_eq!(config.limits.header_read_timeout.as_secs(), 2);
    assert_eq!(config.limits.max_connections, 64);
    let shown = format!("{}\n{config:?}", config.describe().join("\n"));
    for hidden in ["s3cr3t", "pa55word", "t0ken"] {
        assert!(!shown.contains(hidden), "{hidden} is never shown: {shown}");
    }

    let short = AppConfig::from_lookup(env(&[
        ("KENDO_WEBHOOK_SECRET", "s"),
        ("CRM_ADMIN_TOKEN", "short"),
    ]))
    .unwrap_err();
    assert!(short.to_string().contains("CRM_ADMIN_TOKEN"), "{short}");
    let bad = AppConfig::from_lookup(env(&[
        ("KENDO_WEBHOOK_SECRET", "s"),
        ("CRM_ADDR", "localhost"),
    ]))
    .unwrap_err();
    assert!(bad.to_string().contains("CRM_ADDR"), "{bad}");
}

/// Verified deliveries sent while a flood of forged ones arrives are all
/// logged (their queue is their own and never drops), projected once, and
/// the forged ones are counted; on each backend.
async fn verified_entries_survive_a_concurrent_flood(database: Database) {
    let app = start(config_on(database)).await;
    let addr = app.addr();
    let (flood, real_tasks, real_each) = (4_000_usize, 4_usize, 75_usize);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        tasks.spawn(async move {
            let http = Http::new();
            for i in (worker..flood).step_by(16) {
                assert_eq!(
                    http.deliver(addr, &forged(i)).await.status,
                    StatusCode::UNAUTHORIZED
                );
            }
        });
    }
    for worker in 0..real_tasks {
        tasks.spawn(async move {
            let http = Http::new();
            for i in 0..real_each {
                let call = signed(
                    "call.uploaded",
                    &format!("evt_flood_{worker}_{i}"),
                    &format!("dlv_flood_{worker}_{i}"),
                );
                assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a sender");
    }
    let real = real_tasks * real_each;
    let http = Http::new();
    // The unverified rejections are written in the writer's later batches
    // (verified entries go first): wait for them as well.
    let status = eventually(
        "every verified entry written, every call projected, every forgery counted",
        || async {
            let status = http.health(addr).await;
            let counted = status["counts"]["rejections"].as_u64().unwrap_or(0)
                + status["deliveryLog"]["droppedUnverified"]
                    .as_u64()
                    .unwrap_or(0);
            (status["deliveryLog"]["queued"] == 0
                && status["counts"]["deliveries"] == real as u64
                && status["counts"]["calls"] == real as u64
                && counted >= flood as u64)
                .then_some(status)
        },
    )
    .await;
    let counted = status["counts"]["rejections"].as_u64().unwrap_or(0);
    let dropped = status["deliveryLog"]["droppedUnverified"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(counted + dropped, flood as u64, "{status}");
    let log = http.array(addr, "/api/deliveries?limit=1000").await;
    assert_eq!(log.len(), real);
    assert!(log.iter().all(|e| e["outcome"] == "accepted"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_verified_entry_under_a_flood() {
    let (_dir, db) = temp_db();
    verified_entries_survive_a_concurrent_flood(Database::Sqlite(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_verified_entry_under_a_flood() {
    let Some(pg) = postgres_server::PostgresServer::start_or_skip(
        "crm postgres_keeps_every_verified_entry_under_a_flood",
    ) else {
        return;
    };
    verified_entries_survive_a_concurrent_flood(Database::Postgres(pg.url())).await;
}

/// `crm-ingest seed N`: N signed deliveries through the inbox and the
/// projection: one in eight a training, one in fifty a test delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_fills_the_inbox_and_the_tables_through_the_app_s_own_code() {
    let (_dir, db) = temp_db();
    let config = config(&db);
    let report = crm_ingest::seed::run(&config, 0, 400)
        .await
        .expect("seeded");
    assert_eq!((report.stored, report.projected), (400, 400), "{report:?}");
    // Again: the same event ids are duplicates.
    let again = crm_ingest::seed::run(&config, 0, 400)
        .await
        .expect("seeded");
    assert_eq!((again.stored, again.projected), (0, 0), "{again:?}");

    let app = start(config).await;
    let http = Http::new();
    let status = http.health(app.addr()).await;
    let counts = &status["counts"];
    assert_eq!(
        (
            &counts["calls"],
            &counts["testCalls"],
            &counts["trainings"],
            &counts["testTrainings"]
        ),
        (&json!(344), &json!(6), &json!(48), &json!(2)),
        "{status}"
    );
    assert_eq!(status["inbox"]["done"], 400, "{status}");
    let page = http.get(app.addr(), "/").await.text();
    assert!(
        page.contains("Ana Silva"),
        "the agents are on the dashboard"
    );
    app.shutdown().await;
}

/// The admin routes refuse state changes from other sites (CSRF), whatever
/// credentials the browser attaches, and every admin answer carries the
/// security headers; scripts (no `Origin`) and the app's own pages pass,
/// and Kendo's webhook route is not affected.
#[tokio::test]
async fn cross_site_admin_requests_are_refused_and_admin_answers_carry_security_headers() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let addr = app.addr();
    let http = Http::new();
    let post = |headers: &[(&str, String)]| {
        let mut request = Request::post(format!("http://{addr}/api/inbox/requeue"))
            .header("authorization", format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        request.body(Full::default()).expect("a valid request")
    };
    for forged in [
        vec![("origin", "https://evil.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
    ] {
        let reply = http.send(post(&forged)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{forged:?}: {}",
            reply.text()
        );
        assert!(reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("refused"));
    }
    for allowed in [
        vec![],
        vec![("origin", format!("http://{addr}"))],
        vec![("sec-fetch-site", "same-origin".to_owned())],
    ] {
        let reply = http.send(post(&allowed)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{allowed:?}: {}",
            reply.text()
        );
        assert_eq!(reply.json(), serde_json::json!({ "requeued": 0 }));
    }
    let page = http.get(addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    // Kendo's POSTs are server to server: an Origin header changes nothing.
    let delivery = signed("call.uploaded", "evt_origin", "dlv_origin");
    let mut request = delivery
        .request(&format!("http://{addr}/webhooks/kendo"))
        .expect("a valid request");
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(http.send(request).await.status, StatusCode::OK);
    app.shutdown().await;
}

/// `POST /api/inbox/requeue` hands every dead row to the worker again.
#[tokio::test]
async fn requeue_all_hands_dead_rows_back_to_the_worker() {
    let (_dir, db) = temp_db();
    let mut config = config(&db);
    config.run_worker = false;
    let app = start(config).await;
    let addr = app.addr();
    let http = Http::new();
    let delivery = signed("call.uploaded", "evt_dead", "dlv_dead");
    assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    // Mark the row dead as a worker out of attempts would.
    let conn = rusqlite::Connection::open(&db).expect("the app's database");
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let dead = conn
        .execute(
            "UPDATE kendo_inbox SET state = 'dead' WHERE event_id = 'evt_dead'",
            [],
        )
        .expect("mark it dead");
    assert_eq!(dead, 1);
    let request = Request::post(format!("http://{addr}/api/inbox/requeue"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::default())
        .expect("a valid request");
    let reply = http.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!({ "requeued": 1 }));
    let state: String = conn
        .query_row(
            "SELECT state FROM kendo_inbox WHERE event_id = 'evt_dead'",
            [],
            |r| r.get(0),
        )
        .expect("the row");
    assert_eq!(state, "pending");
    app.shutdown().await;
}
