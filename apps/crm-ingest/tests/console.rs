//! The operator console over real HTTP, on SQLite and on Postgres: one
//! delivery's detail (body, headers, answer, attempts, inbox row,
//! projection), the actions (requeue, replay), search and filters, and
//! CSV export.

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
    assert_eq!(retry.rejection(), Some("duplicate"));

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
        let delivery = SignedDelivery::new(SECRET, event, delivery_id, body.clone());
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
