//! A delivery's life through a real axum server: raw-body fidelity,
//! de-duplication, release on failure, rotation and typed events.

use kendo_test_support::delivery_server as common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{client, deliver, delivery, send, Server, SECRET};
use http::StatusCode;
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};
use kendo_webhooks::{
    DedupeKey, Event, KendoWebhookLayer, Rejection, Secret, SignedDelivery, StoreErrorPolicy,
    TestDelivery,
};

#[tokio::test]
async fn unusual_but_validly_signed_bodies_are_accepted_byte_for_byte() {
    let server = Server::start(|b| b).await;
    let client = client();
    let bodies: [&str; 5] = [
        // Whitespace everywhere, and keys in an unusual order.
        "  {\n\t\"data\" : { \"aiScore\" : \"87\" , \"callId\" : \"c1\" } ,\r\n \"created_at\":\"2026-03-05T12:00:00Z\", \"event\":\"call.uploaded\",\"id\":\"evt_ws\"}  ",
        // Escaped unicode and escaped slashes.
        r#"{"id":"evt_\u00e9","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c\/2","agentName":"Jos\u00e9 \ud83d\ude80"}}"#,
        // A trailing newline, as many JSON encoders write.
        "{\"id\":\"evt_nl\",\"event\":\"call.uploaded\",\"created_at\":\"2026-03-05T12:00:00Z\",\"data\":{\"callId\":\"c3\"}}\n",
        // Raw UTF-8 and numbers in exponent form.
        r#"{"id":"evt_utf8","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c4","agentName":"Zoë","duration":2.455e2}}"#,
        // Extra fields Kendo may add one day, in the envelope and in data.
        r#"{"id":"evt_extra","api_version":2,"event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c5","sentiment":{"score":0.9}}}"#,
    ];
    for (i, body) in bodies.iter().enumerate() {
        let signed = SignedDelivery::builder(body.as_bytes().to_vec())
            .event("call.uploaded")
            .delivery_id(format!("dlv_fidelity_{i}"))
            .sign(SECRET);
        let answer = deliver(&client, &server, &signed).await;
        assert_eq!(answer.status, StatusCode::OK, "body {i}: {:?}", answer.body);
    }
    let seen = server.sink.seen.lock().unwrap();
    assert_eq!(seen.len(), bodies.len());
    for ((delivery, read), sent) in seen.iter().zip(bodies) {
        assert_eq!(
            &read[..],
            sent.as_bytes(),
            "the inner service reads the exact bytes"
        );
        assert_eq!(&delivery.body()[..], sent.as_bytes());
    }
    let Event::CallUploaded(call) = seen[1].0.event() else {
        panic!()
    };
    assert_eq!(call.call_id, "c/2");
    assert_eq!(call.agent_name.as_deref(), Some("José 🚀"));
    let Event::CallUploaded(call) = seen[3].0.event() else {
        panic!()
    };
    assert_eq!(call.duration, Some(245.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_copies_are_processed_once() {
    let server = Arc::new(Server::start(|b| b).await);
    // The first call waits at the gate until every copy has been answered.
    server.sink.block_next.store(1, Ordering::SeqCst);
    let signed = delivery("evt_storm", "dlv_storm");
    let client = client();

    let copies: Vec<_> = (0..64)
        .map(|_| {
            let (client, server, signed) = (client.clone(), Arc::clone(&server), signed.clone());
            tokio::spawn(async move { deliver(&client, &server, &signed).await })
        })
        .collect();
    // Exactly one copy reaches the inner service; collect the 63 others' answers.
    let mut answered = Vec::new();
    let mut pending = copies;
    while answered.len() < 63 {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        pending = rest;
        for handle in done {
            answered.push(handle.await.unwrap());
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pending.len(), 1, "one copy is held by the inner service");
    assert_eq!(server.sink.calls(), 1);
    server.sink.gate.add_permits(1);
    let first = pending.pop().unwrap().await.unwrap();

    assert_eq!(first.status, StatusCode::OK);
    for answer in &answered {
        assert_eq!(
            answer.status,
            StatusCode::CONFLICT,
            "copies of an in-flight delivery get 409"
        );
        assert_eq!(answer.reason(), Some("in_flight"));
    }
    // Kendo's next retry finds the delivery done.
    let retry = deliver(&client, &server, &signed).await;
    assert_eq!(
        (retry.status, retry.reason(), retry.is_duplicate()),
        (StatusCode::OK, None, true)
    );
    assert!(retry.body.is_empty());
    assert_eq!(server.sink.calls(), 1, "the inner service ran exactly once");
}

#[tokio::test]
async fn a_failed_attempt_is_released_for_the_retry() {
    let server = Server::start(|b| b).await;
    let client = client();
    server.sink.fail_next.store(1, Ordering::SeqCst);
    let signed = delivery("evt_retry", "dlv_retry");

    let first = deliver(&client, &server, &signed).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        first.reason(),
        None,
        "the inner service's own answer passes through"
    );
    let retry = deliver(&client, &server, &signed).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(server.sink.calls(), 2, "the retry was processed");
    let again = deliver(&client, &server, &signed).await;
    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(server.sink.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_attempt_is_released_for_the_retry() {
    let server = Server::start(|b| b).await;
    let client = client();
    server.sink.block_next.store(1, Ordering::SeqCst);
    let signed = delivery("evt_dropped", "dlv_dropped");

    // Kendo gives up on the first attempt (its timeout), closing the connection.
    let request = signed.request(&server.url()).unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(200), client.request(request)).await;
    assert!(
        gave_up.is_err(),
        "the first attempt hangs in the inner service"
    );
    assert_eq!(server.sink.calls(), 1);

    // The retry is refused while the first attempt is still held, and
    // processed once the server noticed the dropped connection.
    let fresh = common::client(); // a new connection, as Kendo's retry would use
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let answer = deliver(&fresh, &server, &signed).await;
        statuses.push(answer.status);
        if answer.status == StatusCode::OK {
            break;
        }
        assert_eq!(answer.status, StatusCode::CONFLICT);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(statuses.last(), Some(&StatusCode::OK), "{statuses:?}");
    assert_eq!(
        server.sink.calls(),
        2,
        "the retry reached the inner service"
    );
    assert_eq!(
        server.sink.deliveries().len(),
        1,
        "the dropped attempt never finished"
    );
}

#[tokio::test]
async fn a_forged_copy_does_not_block_the_real_delivery() {
    let server = Server::start(|b| b).await;
    let client = client();
    let real = delivery("evt_real", "dlv_about_to_arrive");
    let forged = SignedDelivery::builder(real.body().clone())
        .event("call.uploaded")
        .delivery_id("dlv_about_to_arrive")
        .sign("attacker_guess");

    for _ in 0..3 {
        let answer = deliver(&client, &server, &forged).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(server.store.touches(), 0, "forgeries never reach the store");
    let answer = deliver(&client, &server, &real).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(server.sink.calls(), 1);
}

#[tokio::test]
async fn both_rotated_secrets_verify_and_a_third_does_not() {
    let server =
        Server::start(|b| b.secret(Secret::new("whsec_previous").with_label("previous"))).await;
    let client = client();
    let body = |id: &str| {
        TestDelivery::example("call.uploaded")
            .event_id(id)
            .created_at("2026-03-05T12:00:00Z")
            .body()
    };

    let current = SignedDelivery::builder(body("evt_cur"))
        .event("call.uploaded")
        .delivery_id("dlv_cur")
        .sign(SECRET);
    let previous = SignedDelivery::builder(body("evt_prev"))
        .event("call.uploaded")
        .delivery_id("dlv_prev")
        .sign("whsec_previous");
    let third = SignedDelivery::builder(body("evt_third"))
        .event("call.uploaded")
        .delivery_id("dlv_third")
        .sign("whsec_third");
    assert_eq!(
        deliver(&client, &server, &current).await.status,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&client, &server, &previous).await.status,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&client, &server, &third).await.status,
        StatusCode::UNAUTHORIZED
    );

    let labels: Vec<_> = server
        .sink
        .deliveries()
        .iter()
        .map(|d| d.secret_label().map(str::to_owned))
        .collect();
    assert_eq!(labels, [Some("#1".to_owned()), Some("previous".to_owned())]);
}

#[tokio::test]
async fn unknown_events_and_test_deliveries_arrive_typed() {
    let server = Server::start(|b| b).await;
    let client = client();
    let unknown = SignedDelivery::builder(r#"{"id":"evt_u","event":"deal.won","created_at":"2026-03-05T12:00:00Z","data":{"amount":1200,"currency":"EUR"}}"#).event("deal.won").delivery_id("dlv_unknown").sign(SECRET);
    let test = SignedDelivery::builder(
        TestDelivery::example("ai.training.completed")
            .event_id("evt_t")
            .created_at("2026-03-05T12:02:00Z")
            .is_test(true)
            .body(),
    )
    .event("webhook.test")
    .delivery_id("dlv_test")
    .sign(SECRET);
    assert_eq!(
        deliver(&client, &server, &unknown).await.status,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&client, &server, &test).await.status,
        StatusCode::OK
    );

    let seen = server.sink.deliveries();
    assert_eq!(
        seen[0].event(),
        &Event::Other {
            name: "deal.won".into(),
            data: serde_json::json!({"amount": 1200, "currency": "EUR"}),
        }
    );
    assert!(!seen[0].is_test());
    assert!(seen[1].is_test());
    assert_eq!(seen[1].event_name(), "ai.training.completed");
    let Event::AiTrainingCompleted(training) = seen[1].event() else {
        panic!("{:?}", seen[1].event())
    };
    assert_eq!(
        (
            training.training_id.as_str(),
            training.ai_score,
            training.is_test
        ),
        ("training_evt_t", Some(90.0), true)
    );
}

#[tokio::test]
async fn event_id_key_drops_a_resend_under_a_new_delivery_id() {
    let client = client();
    let by_delivery = Server::start(|b| b).await;
    let by_event = Server::start(|b| b.dedupe_key(DedupeKey::EventId)).await;
    for server in [&by_delivery, &by_event] {
        for delivery_id in ["dlv_a", "dlv_b"] {
            let answer = deliver(&client, server, &delivery("evt_same", delivery_id)).await;
            assert_eq!(answer.status, StatusCode::OK);
        }
    }
    assert_eq!(
        by_delivery.sink.calls(),
        2,
        "a fresh delivery id is a fresh delivery"
    );
    assert_eq!(by_event.sink.calls(), 1, "the signed event id is the same");
}

#[tokio::test]
async fn replay_window_uses_the_given_clock() {
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_712_000); // 2026-03-05T12:00:00Z
    let now = Arc::new(Mutex::new(created + Duration::from_secs(60)));
    let clock = Arc::clone(&now);
    let server = Server::start(move |b| {
        b.replay_tolerance(Duration::from_secs(300))
            .clock(move || *clock.lock().unwrap())
    })
    .await;
    let client = client();

    assert_eq!(
        deliver(&client, &server, &delivery("evt_fresh", "dlv_fresh"))
            .await
            .status,
        StatusCode::OK
    );
    *now.lock().unwrap() = created + Duration::from_secs(301);
    let stale = deliver(&client, &server, &delivery("evt_stale", "dlv_stale")).await;
    assert_eq!(
        (stale.status, stale.reason()),
        (StatusCode::UNAUTHORIZED, Some("outside_replay_window"))
    );
    *now.lock().unwrap() = created - Duration::from_secs(301);
    let future = deliver(&client, &server, &delivery("evt_future", "dlv_future")).await;
    assert_eq!(future.reason(), Some("outside_replay_window"));
    assert_eq!(server.sink.calls(), 1);
}

/// A store that is down: every operation fails.
struct DownStore;

impl DedupeStore for DownStore {
    fn claim<'a>(&'a self, _: &'a str, _: ClaimToken) -> StoreFuture<'a, Claim> {
        Box::pin(async { Err(StoreError::new("store is down")) })
    }
    fn complete<'a>(&'a self, _: &'a str, _: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::new("store is down")) })
    }
    fn release<'a>(&'a self, _: &'a str, _: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::new("store is down")) })
    }
}

#[tokio::test]
async fn store_failure_follows_the_policy() {
    let client = client();
    for (policy, status, calls) in [
        (StoreErrorPolicy::FailOpen, StatusCode::OK, 1),
        (
            StoreErrorPolicy::FailClosed,
            StatusCode::SERVICE_UNAVAILABLE,
            0,
        ),
    ] {
        let layer = KendoWebhookLayer::builder()
            .secret(SECRET)
            .dedupe_store(DownStore)
            .store_error_policy(policy)
            .build()
            .unwrap();
        let sink = Arc::new(common::Sink::default());
        let addr = common::serve(common::app(layer, Arc::clone(&sink))).await;
        let request = delivery("evt_down", "dlv_down")
            .request(&format!("http://{addr}{}", common::PATH))
            .unwrap();
        let answer = send(&client, request).await;
        assert_eq!(answer.status, status, "{policy:?}");
        assert_eq!(sink.calls(), calls, "{policy:?}");
    }
}

#[tokio::test]
async fn the_outcome_hook_sees_every_answer_the_layer_gives() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink_log = Arc::clone(&log);
    let server = Server::start(move |b| {
        b.on_outcome(move |r| {
            let (kendo_webhooks::Outcome::Rejected(_) | kendo_webhooks::Outcome::Duplicate) =
                r.outcome()
            else {
                return;
            };
            sink_log.lock().unwrap().push((
                r.outcome().as_str(),
                r.delivery_id().map(str::to_owned),
                r.event_id().map(str::to_owned),
                r.secret_label().map(str::to_owned),
                r.is_verified(),
            ))
        })
    })
    .await;
    let client = client();
    let real = delivery("evt_hook", "dlv_hook");
    let forged = SignedDelivery::builder(real.body().clone())
        .event("call.uploaded")
        .delivery_id("dlv_forged")
        .sign("nope");
    deliver(&client, &server, &real).await;
    deliver(&client, &server, &real).await;
    deliver(&client, &server, &forged).await;

    let log = log.lock().unwrap();
    assert_eq!(
        *log,
        [
            (
                "duplicate",
                Some("dlv_hook".into()),
                Some("evt_hook".into()),
                Some("#1".into()),
                true
            ),
            (
                Rejection::InvalidSignature.as_str(),
                Some("dlv_forged".into()),
                None,
                None,
                false
            ),
        ]
    );
}

#[tokio::test]
async fn a_captured_request_resent_under_a_future_delivery_id_cannot_swallow_that_delivery() {
    let server = Server::start(|b| b).await;
    let client = client();
    let captured = delivery("evt_captured", "dlv_captured");
    assert_eq!(
        deliver(&client, &server, &captured).await.status,
        StatusCode::OK
    );

    // Someone holding the signed body resends it under a delivery id they
    // expect Kendo to use next. The header is unsigned, so this replays the
    // captured event (the documented limit of the delivery-id key)...
    let replay = SignedDelivery::builder(captured.body().clone())
        .event("call.uploaded")
        .delivery_id("dlv_next")
        .sign(SECRET);
    assert_eq!(
        deliver(&client, &server, &replay).await.status,
        StatusCode::OK
    );
    // ...but it does not mark Kendo's real delivery of another event as seen.
    let real = delivery("evt_next", "dlv_next");
    let answer = deliver(&client, &server, &real).await;
    assert_eq!((answer.status, answer.reason()), (StatusCode::OK, None));
    let events: Vec<_> = server
        .sink
        .deliveries()
        .iter()
        .map(|d| d.event_id().to_owned())
        .collect();
    assert_eq!(events, ["evt_captured", "evt_captured", "evt_next"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_in_flight_wait_a_copy_is_refused_after_one_look_at_the_store() {
    let server = Arc::new(Server::start(|b| b.in_flight_wait(Duration::ZERO)).await);
    server.sink.block_next.store(1, Ordering::SeqCst);
    let signed = delivery("evt_no_wait", "dlv_no_wait");
    let client = client();
    let first = tokio::spawn({
        let (client, server, signed) = (client.clone(), Arc::clone(&server), signed.clone());
        async move { deliver(&client, &server, &signed).await }
    });
    while server.sink.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let copy = deliver(&client, &server, &signed).await;
    assert_eq!(
        (copy.status, copy.reason()),
        (StatusCode::CONFLICT, Some("in_flight"))
    );
    assert_eq!(
        server.store.claims.load(Ordering::SeqCst),
        2,
        "the copy claimed once and did not wait"
    );
    server.sink.gate.add_permits(1);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
}
