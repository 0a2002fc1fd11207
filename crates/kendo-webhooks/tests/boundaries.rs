//! Exact limits, over real HTTP: the body limit (declared and streamed),
//! the id length limit, the replay window, the body budget (charged for
//! bytes received), the body start deadline and minimum rate, what a
//! duplicate answers, and back-pressure from the inner service.

use kendo_test_support::delivery_server as common;

use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, SystemTime};

use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use kendo_webhooks::{KendoWebhookLayer, SignedDelivery, TestDelivery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{Layer, Service, ServiceExt};

const LIMIT: usize = 2048;

/// A valid signed delivery whose body is exactly `len` bytes (the envelope
/// padded with trailing whitespace, which JSON allows).
fn delivery_of_len(event_id: &str, len: usize) -> SignedDelivery {
    let mut body = TestDelivery::example("call.uploaded")
        .event_id(event_id)
        .created_at("2026-03-05T12:00:00Z")
        .body()
        .to_vec();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id(format!("dlv_{event_id}"))
        .sign(SECRET)
}

/// The request head of `d` as sent on the wire, with `framing` (a
/// `content-length` or `transfer-encoding` line).
fn head(d: &SignedDelivery, framing: &str) -> String {
    format!(
        "POST {PATH} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{framing}\r\n\
         x-kendo-signature: {}\r\nx-kendo-delivery-id: {}\r\nx-kendo-event: {}\r\n\r\n",
        d.signature(),
        d.delivery_id(),
        d.event()
    )
}

/// Reads one response head from `stream`: its status and rejection reason.
async fn read_answer(stream: &mut TcpStream) -> (u16, Option<String>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received).to_lowercase();
    let status = text[9..12].parse().expect("status code");
    let reason = text
        .lines()
        .find_map(|l| l.strip_prefix("x-kendo-webhook-rejection: "))
        .map(|r| r.trim().to_owned());
    (status, reason)
}

/// Sends `d` with chunked transfer encoding (no declared length), in two
/// chunks, and reads the answer.
async fn send_chunked(server: &Server, d: &SignedDelivery) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let body = d.body();
    let (a, b) = body.split_at(body.len() / 2);
    let mut wire = head(d, "transfer-encoding: chunked").into_bytes();
    for chunk in [a, b] {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&wire).await.expect("write");
    read_answer(&mut stream).await
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_refused() {
    let server = Server::start(|b| b.body_limit(LIMIT)).await;
    let client = client();
    // Declared lengths (the client sends content-length).
    let exact = deliver(&client, &server, &delivery_of_len("exact", LIMIT)).await;
    assert_eq!(exact.status, StatusCode::OK, "{exact:?}");
    let over = deliver(&client, &server, &delivery_of_len("over", LIMIT + 1)).await;
    assert_eq!(over.reason(), Some("payload_too_large"));
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed bodies, no declared length: the same boundary.
    let streamed = send_chunked(&server, &delivery_of_len("streamed", LIMIT)).await;
    assert_eq!(streamed, (200, None));
    let streamed_over = send_chunked(&server, &delivery_of_len("streamed_over", LIMIT + 1)).await;
    assert_eq!(streamed_over, (413, Some("payload_too_large".to_owned())));
    assert_eq!(server.sink.calls(), 2);
}

#[tokio::test]
async fn an_oversized_declared_length_is_refused_before_any_body_byte() {
    // A read deadline far beyond the test's patience for an answer, so
    // only the declared-length check can answer in time.
    let server = Server::start(|b| b.body_limit(LIMIT).read_timeout(Duration::from_secs(60))).await;
    let d = delivery_of_len("declared", LIMIT + 1);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let framing = format!("content-length: {}", LIMIT + 1);
    stream
        .write_all(head(&d, &framing).as_bytes())
        .await
        .expect("write the head only");
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer, (413, Some("payload_too_large".to_owned())));
    assert_eq!(server.store.touches(), 0);
}

#[tokio::test]
async fn ids_of_256_characters_are_accepted_and_257_refused() {
    let server = Server::start(|b| b).await;
    let client = client();
    let body = TestDelivery::example("call.uploaded")
        .event_id("evt_ids")
        .created_at("2026-03-05T12:00:00Z")
        .body();
    let with_id = |id: String| {
        SignedDelivery::builder(body.clone())
            .event("call.uploaded")
            .delivery_id(id)
            .sign(SECRET)
    };
    let longest = deliver(&client, &server, &with_id("d".repeat(256))).await;
    assert_eq!(longest.status, StatusCode::OK, "{longest:?}");
    let too_long = deliver(&client, &server, &with_id("d".repeat(257))).await;
    assert_eq!(too_long.reason(), Some("malformed_delivery_id"));
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(server.sink.calls(), 1);
}

#[tokio::test]
async fn the_replay_window_includes_its_exact_edges() {
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_712_000); // 2026-03-05T12:00:00Z
    let now = Arc::new(Mutex::new(created));
    let clock = Arc::clone(&now);
    let tolerance = Duration::from_secs(300);
    let server = Server::start(move |b| {
        b.replay_tolerance(tolerance)
            .clock(move || *clock.lock().unwrap())
    })
    .await;
    let client = client();
    let cases = [
        (created + tolerance, "late_edge", None),
        (created - tolerance, "early_edge", None),
        (
            created + tolerance + Duration::from_millis(1),
            "too_late",
            Some("outside_replay_window"),
        ),
        (
            created - tolerance - Duration::from_millis(1),
            "too_early",
            Some("outside_replay_window"),
        ),
    ];
    for (at, id, expected) in cases {
        *now.lock().unwrap() = at;
        let answer = deliver(&client, &server, &delivery(id, id)).await;
        assert_eq!(answer.reason(), expected, "{id}: {answer:?}");
    }
    assert_eq!(server.sink.calls(), 2);
}

#[tokio::test]
async fn a_duplicate_answers_an_empty_body_and_a_rejection_its_text() {
    let server = Server::start(|b| b).await;
    let client = client();
    let d = delivery("evt_dup", "dlv_dup");
    assert_eq!(deliver(&client, &server, &d).await.status, StatusCode::OK);
    let duplicate = deliver(&client, &server, &d).await;
    assert!(duplicate.is_duplicate(), "{duplicate:?}");
    assert_eq!(duplicate.reason(), None, "a duplicate is not a rejection");
    assert_eq!(duplicate.status, StatusCode::OK);
    assert!(duplicate.body.is_empty(), "{duplicate:?}");
    assert!(duplicate.headers.get("content-type").is_none());

    let mut unsigned = d.request(&server.url()).unwrap();
    unsigned.headers_mut().remove("x-kendo-signature");
    let rejected = send(&client, unsigned).await;
    assert_eq!(rejected.reason(), Some("missing_signature"));
    assert!(
        rejected.body.starts_with(b"missing_signature: "),
        "{rejected:?}"
    );
    assert_eq!(
        rejected.headers["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn past_the_body_budget_requests_get_503_with_retry_after_until_it_frees() {
    // A budget of exactly one limit-size body (small bodies may use all of
    // it); no minimum rate, so the stalled body keeps its share.
    let server = Server::start(|b| b.body_limit(1024).body_budget(1024).min_body_rate(0)).await;
    let stalled_d = delivery_of_len("stalled", 1024);
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(head(&stalled_d, "content-length: 1024").as_bytes())
        .await
        .expect("write");
    stalled
        .write_all(&stalled_d.body()[..1000])
        .await
        .expect("write");

    // 1,000 bytes of the budget are taken: a body that does not fit in the
    // rest is refused once its bytes arrive, declared or streamed.
    let client = client();
    let mut refused = None;
    for _ in 0..200 {
        let answer = deliver(&client, &server, &delivery("evt_busy", "dlv_busy")).await;
        if answer.status != StatusCode::OK {
            refused = Some(answer);
            break;
        }
        // The stalled request's head may not have been read yet.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("the stalled body holds the whole budget");
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.reason(), Some("body_budget_exhausted"));
    assert_eq!(refused.headers["retry-after"], "1");
    let streamed = send_chunked(&server, &delivery("evt_busy", "dlv_busy")).await;
    assert_eq!(streamed, (503, Some("body_budget_exhausted".to_owned())));
    assert_eq!(server.sink.calls(), 0);

    // The stalled request completes: its share returns, the next gets in.
    stalled
        .write_all(&stalled_d.body()[1000..])
        .await
        .expect("write");
    assert_eq!(read_answer(&mut stalled).await, (200, None));
    let after = deliver(&client, &server, &delivery("evt_busy", "dlv_busy")).await;
    assert_eq!(after.status, StatusCode::OK, "{after:?}");
    assert_eq!(server.sink.calls(), 2);
}

#[tokio::test]
async fn the_layer_is_not_ready_while_the_inner_service_is_not() {
    let layer = KendoWebhookLayer::new(SECRET).unwrap();
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let mut gate = gate_rx.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(Full::new(Bytes::new())))
        }
    });
    let mut service = layer.layer(tower::limit::ConcurrencyLimit::new(inner, 1));
    let request = || {
        delivery("evt_ready", "dlv_ready")
            .request("http://test/")
            .unwrap()
    };
    let first = ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
        .await
        .unwrap()
        .call(request());
    let first = tokio::spawn(first);
    // The only permit is inside the first call: the layer must say so.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let ready = Service::<Request<Full<Bytes>>>::poll_ready(&mut service, &mut cx);
    assert!(ready.is_pending());
    gate_tx.send(true).unwrap();
    let answer = first.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // Once it answered, the permit is back and the layer is ready again.
    let ready = Service::<Request<Full<Bytes>>>::poll_ready(&mut service, &mut cx);
    assert!(ready.is_ready());
}

#[tokio::test]
async fn by_default_a_body_of_64_kib_is_accepted_and_one_byte_more_is_refused() {
    let server = Server::start(|b| b).await;
    let client = client();
    let exact = deliver(
        &client,
        &server,
        &delivery_of_len("default_exact", 64 * 1024),
    )
    .await;
    assert_eq!(exact.status, StatusCode::OK, "{exact:?}");
    let over = deliver(
        &client,
        &server,
        &delivery_of_len("default_over", 64 * 1024 + 1),
    )
    .await;
    assert_eq!(over.reason(), Some("payload_too_large"));
    assert_eq!(server.sink.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_bodies_that_never_arrive_hold_no_budget() {
    // Before issue 17, a declared length was reserved before the body was
    // read: 224 stalled heads of 64 KiB filled the default budget's share
    // for large bodies, and the 225th was refused. The budget is charged for
    // bytes received now. `Expect: 100-continue` makes the server say when
    // it starts reading a body.
    let server = Server::start(|b| {
        b.read_timeout(Duration::from_secs(600))
            .body_start_timeout(Duration::from_secs(600))
    })
    .await;
    let d = delivery_of_len("stalled_default", 64 * 1024);
    let request_head = head(&d, "content-length: 65536\r\nexpect: 100-continue");
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(request_head.as_bytes())
            .await
            .expect("write");
        assert_eq!(read_answer(&mut stream).await, (100, None), "request {i}");
        stalled.push(stream);
    }
    let client = client();
    let real = deliver(&client, &server, &delivery("evt_real", "dlv_real")).await;
    assert_eq!(real.status, StatusCode::OK, "{real:?}");
    // A whole 64 KiB body still fits.
    let large = deliver(&client, &server, &delivery_of_len("large", 64 * 1024)).await;
    assert_eq!(large.status, StatusCode::OK, "{large:?}");
    assert_eq!(server.sink.calls(), 2);
}

#[tokio::test]
async fn a_declared_body_that_never_starts_is_answered_408_body_not_started() {
    let server = Server::start(|b| b.body_start_timeout(Duration::from_millis(300))).await;
    let d = delivery("evt_not_started", "dlv_not_started");
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let framing = format!("content-length: {}", d.body().len());
    stream
        .write_all(head(&d, &framing).as_bytes())
        .await
        .expect("write the head only");
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer, (408, Some("body_not_started".to_owned())));
    assert_eq!(server.sink.calls(), 0);
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_is_answered_408_body_too_slow() {
    // 100 bytes a second earn 0.1 s each; a byte every 200 ms falls behind.
    let server = Server::start(|b| {
        b.body_start_timeout(Duration::from_millis(300))
            .min_body_rate(100)
    })
    .await;
    let d = delivery("evt_slow", "dlv_slow");
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let framing = format!("content-length: {}", d.body().len());
    stream
        .write_all(head(&d, &framing).as_bytes())
        .await
        .expect("write the head");
    let (mut reader, mut writer) = stream.into_split();
    let body = d.body().clone();
    let trickle = tokio::spawn(async move {
        // Bounded: the body is a few hundred bytes.
        for byte in body.iter() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 20 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-kendo-webhook-rejection: body_too_slow"),
        "{answer}"
    );
    trickle.abort();
    assert_eq!(server.sink.calls(), 0);
}
