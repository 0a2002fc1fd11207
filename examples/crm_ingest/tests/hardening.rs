//! The app on the public internet, over real TCP: the admin token, the
//! server's header-read timeout, a flood of forged deliveries against the
//! delivery log, pagination, and the metrics.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn admin_routes_refuse_a_missing_or_wrong_token_and_accept_bearer_or_basic() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();
    let basic = |user: &str, password: &str| {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {credentials}")
    };

    for path in [
        "/",
        "/api/calls",
        "/api/trainings",
        "/api/deliveries",
        "/api/rejections",
        "/api/inbox",
        "/metrics",
    ] {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token".to_owned()),
            Some(format!("Bearer {TOKEN}x")),
            Some(basic("admin", "wrong")),
            Some(format!("Token {TOKEN}")),
        ] {
            let reply = http.get_with(addr, path, auth.as_deref()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{path} with {auth:?}"
            );
            assert!(
                reply
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Basic")),
                "{path}: {:?}",
                reply.headers
            );
            assert!(!reply.text().contains(TOKEN));
        }
        let bearer = http
            .get_with(addr, path, Some(&format!("Bearer {TOKEN}")))
            .await;
        assert_eq!(bearer.status, StatusCode::OK, "{path}: {}", bearer.text());
        let browser = http
            .get_with(addr, path, Some(&basic("anyone", TOKEN)))
            .await;
        assert_eq!(browser.status, StatusCode::OK, "{path}: {}", browser.text());
    }
    // Open: health and the webhook (protected by its signature).
    let health = http.get_with(addr, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    let delivery = signed("call.uploaded", "evt_open", "dlv_open");
    assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn a_generated_admin_token_is_random_and_works() {
    let (_dir, db) = temp_db();
    let mut generated = config(&db);
    generated.admin_token = None;
    let app = start(generated).await;
    assert!(app.token_generated());
    let token = app.admin_token().to_owned();
    assert_eq!(token.len(), 32);
    assert_ne!(token, crm_ingest::auth::AdminToken::generate());
    let http = Http::new();
    let reply = http
        .get_with(app.addr(), "/api/calls", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = http.get(app.addr(), "/api/calls").await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "the tests' token is not it"
    );
    app.shutdown().await;
}

/// Reads until the server closes the connection (or `bound` after `since`
/// passes); returns how long after `since` it was closed.
async fn closed_within(
    stream: &mut TcpStream,
    since: Instant,
    bound: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        let left = bound.checked_sub(since.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {} // a 408 or similar before the close
        }
    }
}

#[tokio::test]
async fn idle_half_sent_requests_and_idle_keep_alive_connections_are_closed_within_the_header_timeout(
) {
    let (_dir, db) = temp_db();
    let mut cfg = config(&db);
    cfg.limits.header_read_timeout = Duration::from_secs(1);
    let app = start(cfg).await;
    let addr = app.addr();

    // 60 connections that send part of a request head, then nothing.
    let sent = Instant::now();
    let mut slow = Vec::new();
    for i in 0..60 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let partial = format!("POST /webhooks/kendo HTTP/1.1\r\nHost: crm\r\nX-Kendo-Delivery-Id: slow-{i}\r\nX-Pad: ");
        stream.write_all(partial.as_bytes()).await.expect("write");
        slow.push(stream);
    }
    // One kept-alive connection that finished a request and then idles.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: crm\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.expect("an answer");
    let answered = Instant::now();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Generous bound (not a timing assertion): without a header timeout
    // these connections stay open indefinitely.
    let bound = Duration::from_secs(15);
    let idle_closed = tokio::spawn(async move { closed_within(&mut idle, answered, bound).await });
    let mut slowest = Duration::ZERO;
    for stream in &mut slow {
        let closed = closed_within(stream, sent, bound)
            .await
            .expect("the half-sent request is closed");
        slowest = slowest.max(closed);
    }
    let idle_closed = idle_closed
        .await
        .expect("the idle task")
        .expect("the idle connection is closed");
    println!("60 half-sent requests closed, the last {slowest:?} after it was sent; the idle keep-alive connection {idle_closed:?} after its answer (header timeout 1 s)");

    // The server still serves.
    let http = Http::new();
    assert_eq!(
        http.get_with(addr, "/healthz", None).await.status,
        StatusCode::OK
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_forged_deliveries_leaves_the_verified_log_in_place() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let real = 20;
    for i in 0..real {
        let call = signed(
            "call.uploaded",
            &format!("evt_real_{i}"),
            &format!("dlv_real_{i:02}"),
        );
        assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    }
    eventually("the real entries logged", || async {
        (http.array(addr, "/api/deliveries").await.len() == real).then_some(())
    })
    .await;

    // 12,000 forged deliveries (more than the old log's 10,000 cap), 16 at a time.
    let flood = 12_000;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        tasks.spawn(async move {
            let http = Http::new();
            let mut refused = 0;
            for i in (worker..flood).step_by(16) {
                let reply = http.deliver(addr, &forged(i)).await;
                if reply.status == StatusCode::UNAUTHORIZED {
                    refused += 1;
                }
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(n) = tasks.join_next().await {
        refused += n.expect("the flood task");
    }
    assert_eq!(refused, flood);
    println!("{flood} forged deliveries sent in {:?}", started.elapsed());

    let total = eventually("every rejection counted", || async {
        let health = http.health(addr).await;
        let counted = health["counts"]["rejections"].as_u64().unwrap_or(0);
        let dropped = health["deliveryLog"]["droppedUnverified"]
            .as_u64()
            .unwrap_or(0);
        (counted + dropped == flood as u64).then_some((counted, dropped))
    })
    .await;
    println!(
        "rejections counted: {}, dropped from the queue: {}",
        total.0, total.1
    );

    let log = http.array(addr, "/api/deliveries?limit=1000").await;
    assert_eq!(log.len(), real, "every verified entry is still there");
    assert!(log.iter().all(|e| e["outcome"] == "accepted"));
    let page = http.get(addr, "/").await.text();
    let shown = (0..real)
        .filter(|i| page.contains(&format!("dlv_real_{i:02}")))
        .count();
    assert_eq!(
        shown, real,
        "the dashboard still shows every verified entry"
    );
    let forged_rows = page.matches("<code>forged-").count();
    assert!(
        (1..=20).contains(&forged_rows),
        "a few forged attempts beside them: {forged_rows}"
    );
    let rejections = http.array(addr, "/api/rejections").await;
    assert!(
        rejections.len() <= 10,
        "a few rows per minute: {}",
        rejections.len()
    );
    assert!(rejections
        .iter()
        .all(|r| r["reason"] == "invalid_signature"));
    app.shutdown().await;
}

#[tokio::test]
async fn pages_return_every_row_exactly_once_with_filters_and_a_next_link() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let (real, tests) = (250, 7);
    for i in 0..real {
        let call = signed(
            "call.uploaded",
            &format!("evt_page_{i}"),
            &format!("dlv_page_{i}"),
        );
        assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    }
    for i in 0..tests {
        let test = test_delivery(&format!("evt_test_{i}"), &format!("dlv_test_{i}"));
        assert_eq!(http.deliver(addr, &test).await.status, StatusCode::OK);
    }
    eventually("every call projected", || async {
        let health = http.health(addr).await;
        (health["inbox"]["done"] == real + tests).then_some(())
    })
    .await;

    let default = http.get(addr, "/api/calls").await;
    assert_eq!(
        default.json().as_array().map(Vec::len),
        Some(100),
        "default limit 100"
    );
    assert!(default.header("link").is_some());

    // Follow the Link headers.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut path = "/api/calls?limit=37".to_owned();
    let mut pages = 0;
    loop {
        let reply = http.get(addr, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        pages += 1;
        assert!(pages <= 20, "too many pages");
        for row in reply.json().as_array().expect("a JSON array") {
            assert_eq!(row["isTest"], false);
            *seen
                .entry(row["eventId"].as_str().expect("an id").to_owned())
                .or_default() += 1;
        }
        let Some(link) = reply.header("link") else {
            break;
        };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        path = link
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(uri, _)| uri.to_owned())
            .expect("<uri>");
        assert!(
            path.starts_with("/api/calls?limit=37&test=exclude&cursor="),
            "{path}"
        );
    }
    assert_eq!(pages, 7); // 250 / 37, rounded up
    assert_eq!(seen.len(), real);
    assert!(seen.values().all(|&n| n == 1), "each row once");

    let only = http.array(addr, "/api/calls?test=only&limit=1000").await;
    assert_eq!(only.len(), tests);
    assert!(only.iter().all(|r| r["isTest"] == true));
    assert_eq!(
        http.array(addr, "/api/calls?test=include&limit=1000")
            .await
            .len(),
        real + tests
    );

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=abc",
        "test=maybe",
    ] {
        let reply = http.get(addr, &format!("/api/calls?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let accepted = http
        .array(addr, "/api/deliveries?outcome=accepted&limit=1000")
        .await;
    assert_eq!(accepted.len(), real + tests);
    let duplicates = http.array(addr, "/api/deliveries?outcome=duplicate").await;
    assert!(duplicates.is_empty());
    let bad = http.get(addr, "/api/deliveries?reason=%3Cscript%3E").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_count_outcomes_and_reasons_and_show_the_backlog() {
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();

    let call = signed("call.uploaded", "evt_metrics", "dlv_metrics");
    assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    assert_eq!(http.deliver(addr, &call).await.status, StatusCode::OK);
    assert_eq!(
        http.deliver(addr, &forged(7)).await.status,
        StatusCode::UNAUTHORIZED
    );
    rows(&http, addr, "/api/calls", 1).await;

    let reply = http.get(addr, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = reply.text();
    for needle in [
        "kendo_webhook_requests_total{outcome=\"accepted\"}",
        "kendo_webhook_requests_total{outcome=\"duplicate\"}",
        "kendo_webhook_requests_total{outcome=\"invalid_signature\"}",
        "kendo_webhook_inner_duration_seconds_bucket",
        "crm_projection_duration_seconds_bucket",
        "crm_inbox_backlog",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    let _: Value = http.health(addr).await;
    app.shutdown().await;
}
