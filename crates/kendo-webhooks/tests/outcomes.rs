//! The `on_outcome` hook sees every outcome, over real HTTP; secrets are
//! replaced atomically while requests are in flight.

use kendo_test_support::delivery_server as common;

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use common::*;
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};
use kendo_webhooks::{
    KendoWebhookLayer, Outcome, Report, SignedDelivery, StoreErrorPolicy, TestDelivery,
};

/// What the hook saw: the outcome label, event id and verified flag.
type Seen = Arc<Mutex<Vec<(String, Option<String>, bool, Option<u16>)>>>;

fn recorder() -> (Seen, impl Fn(&Report<'_>) + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let hook = move |report: &Report<'_>| {
        let status = match report.outcome() {
            Outcome::Accepted { status, .. } => Some(status.as_u16()),
            Outcome::InnerFailed { status, .. } => status.map(|s| s.as_u16()),
            Outcome::Rejected(reason) => Some(reason.status().as_u16()),
            Outcome::Duplicate => Some(200),
            _ => None,
        };
        hook_seen.lock().unwrap().push((
            report.outcome().as_str().to_owned(),
            report.event_id().map(str::to_owned),
            report.is_verified(),
            status,
        ));
    };
    (seen, hook)
}

fn entry(
    label: &str,
    event: Option<&str>,
    verified: bool,
    status: Option<u16>,
) -> (String, Option<String>, bool, Option<u16>) {
    (label.to_owned(), event.map(str::to_owned), verified, status)
}

#[tokio::test]
async fn every_request_is_reported_once_with_its_outcome() {
    let (seen, hook) = recorder();
    let server = Server::start(|b| b.on_outcome(hook)).await;
    server
        .sink
        .fail_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let client = client();
    let d = delivery("evt_1", "dlv_1");
    // Fails in the inner service, then is processed, then is a duplicate.
    assert_eq!(
        deliver(&client, &server, &d).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(deliver(&client, &server, &d).await.status, StatusCode::OK);
    assert!(deliver(&client, &server, &d).await.is_duplicate());
    let forged = SignedDelivery::builder(d.body().clone())
        .event("call.uploaded")
        .delivery_id("dlv_2")
        .sign("wrong");
    assert_eq!(
        deliver(&client, &server, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            entry("inner_failed", Some("evt_1"), true, Some(500)),
            entry("accepted", Some("evt_1"), true, Some(200)),
            entry("duplicate", Some("evt_1"), true, Some(200)),
            entry("invalid_signature", None, false, Some(401)),
        ]
    );
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

async fn with_down_store(policy: StoreErrorPolicy) -> (Seen, StatusCode) {
    let (seen, hook) = recorder();
    let layer = KendoWebhookLayer::builder()
        .secret(SECRET)
        .dedupe_store(DownStore)
        .store_error_policy(policy)
        .on_outcome(hook)
        .build()
        .unwrap();
    let sink = Arc::new(Sink::default());
    let addr = serve(app(layer, sink)).await;
    let d = delivery("evt_down", "dlv_down");
    let answer = send(
        &client(),
        d.request(&format!("http://{addr}{PATH}")).unwrap(),
    )
    .await;
    (seen, answer.status)
}

#[tokio::test]
async fn store_failures_are_reported_under_either_policy() {
    let (seen, status) = with_down_store(StoreErrorPolicy::FailOpen).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            entry("store_failed", Some("evt_down"), true, None),
            entry("accepted", Some("evt_down"), true, Some(200)),
        ]
    );
    let (seen, status) = with_down_store(StoreErrorPolicy::FailClosed).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            entry("store_failed", Some("evt_down"), true, None),
            entry("store_unavailable", Some("evt_down"), true, Some(503)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_replaced_atomically_under_concurrent_load() {
    let layer = KendoWebhookLayer::builder()
        .secret("whsec_a")
        .secret("whsec_b")
        .build()
        .unwrap();
    let sink = Arc::new(Sink::default());
    let addr = serve(app(layer.clone(), Arc::clone(&sink))).await;
    let url = format!("http://{addr}{PATH}");
    let signed = |secret: &str, n: usize| {
        let body = TestDelivery::example("call.uploaded")
            .event_id(format!("evt_{secret}_{n}"))
            .created_at("2026-03-05T12:00:00Z")
            .body();
        SignedDelivery::builder(body)
            .event("call.uploaded")
            .delivery_id(format!("dlv_{secret}_{n}"))
            .sign(secret)
    };
    // Senders for a secret kept in both sets (b), while the set is swapped
    // back and forth between {a, b} and {b, c}.
    let mut senders = tokio::task::JoinSet::new();
    for task in 0..8usize {
        let (url, client) = (url.clone(), client());
        let delivery = move |n| signed("whsec_b", task * 1_000 + n);
        senders.spawn(async move {
            let mut refused = 0;
            for n in 0..50usize {
                let answer = send(&client, delivery(n).request(&url).unwrap()).await;
                if answer.status != StatusCode::OK {
                    refused += 1;
                }
            }
            refused
        });
    }
    for round in 0..200 {
        let set = if round % 2 == 0 {
            ["whsec_b", "whsec_c"]
        } else {
            ["whsec_a", "whsec_b"]
        };
        layer.replace_secrets(set).unwrap();
        tokio::task::yield_now().await;
    }
    let mut refused = 0;
    while let Some(joined) = senders.join_next().await {
        refused += joined.unwrap();
    }
    assert_eq!(refused, 0, "a secret present in every set was refused");
    assert_eq!(sink.calls(), 400);

    // After the last swap ({a, b}), c is refused and a accepted; an empty
    // set is refused and leaves the secrets as they were.
    let client = client();
    let c = send(&client, signed("whsec_c", 0).request(&url).unwrap()).await;
    assert_eq!(c.reason(), Some("invalid_signature"));
    assert!(layer.replace_secrets(Vec::<String>::new()).is_err());
    assert!(layer.replace_secrets([""]).is_err());
    let a = send(&client, signed("whsec_a", 0).request(&url).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
}

/// The hook sees the inner service's response headers when it answered
/// (e.g. the inbox's `x-kendo-inbox: duplicate`), and none when the layer
/// answered itself.
#[tokio::test]
async fn the_hook_sees_the_inner_services_response_headers() {
    type Headers = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Headers = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let layer = KendoWebhookLayer::builder()
        .secret(SECRET)
        .on_outcome(move |report: &Report<'_>| {
            let marker = report
                .response_headers()
                .and_then(|h| h.get("x-marker"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            hook_seen
                .lock()
                .unwrap()
                .push((report.outcome().as_str().to_owned(), marker));
        })
        .build()
        .expect("a valid layer");
    let router = axum::Router::new().route(
        PATH,
        axum::routing::post(
            |delivery: axum::Extension<kendo_webhooks::Delivery>| async move {
                let failing = delivery.event_id() == "evt_fail";
                let status = if failing {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let marker = if failing {
                    "failed-here"
                } else {
                    "stored-here"
                };
                (status, [("x-marker", marker)])
            },
        )
        .layer(layer),
    );
    let addr = serve(router).await;
    let url = format!("http://{addr}{PATH}");
    let client = client();
    let send_one = |d: SignedDelivery| {
        let request = d.request(&url).expect("a valid request");
        send(&client, request)
    };
    assert_eq!(
        send_one(delivery("evt_ok", "dlv_ok")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send_one(delivery("evt_fail", "dlv_fail")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(send_one(delivery("evt_ok", "dlv_ok")).await.is_duplicate());
    let seen = seen.lock().unwrap().clone();
    let expected = [
        ("accepted", Some("stored-here")),
        ("inner_failed", Some("failed-here")),
        ("duplicate", None),
    ]
    .map(|(label, marker)| (label.to_owned(), marker.map(str::to_owned)));
    assert_eq!(seen, expected);
}

/// A verified body that fails to parse is reported verified, with the
/// label of the secret that verified it.
#[tokio::test]
async fn a_verified_but_malformed_body_is_reported_with_its_secret_label() {
    // (outcome, verified, secret label); the one secret is labelled `#1`.
    type Labels = Arc<Mutex<Vec<(String, bool, Option<String>)>>>;
    let seen: Labels = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let server = Server::start(move |b| {
        b.on_outcome(move |report: &Report<'_>| {
            hook_seen.lock().unwrap().push((
                report.outcome().as_str().to_owned(),
                report.is_verified(),
                report.secret_label().map(str::to_owned),
            ));
        })
    })
    .await;
    let client = client();
    let malformed = SignedDelivery::builder(&b"[1]"[..])
        .event("call.uploaded")
        .delivery_id("dlv_bad")
        .sign(SECRET);
    let answer = deliver(&client, &server, &malformed).await;
    assert_eq!(answer.reason(), Some("malformed_envelope"));
    let forged = SignedDelivery::builder(&b"[1]"[..])
        .event("call.uploaded")
        .delivery_id("dlv_forged")
        .sign("wrong");
    assert_eq!(
        deliver(&client, &server, &forged).await.reason(),
        Some("invalid_signature")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("malformed_envelope".to_owned(), true, Some("#1".to_owned())),
            ("invalid_signature".to_owned(), false, None),
        ]
    );
}

/// The hook reads the verified delivery from the report, with its schema
/// drift; an unverified request has none.
#[tokio::test]
async fn the_hook_sees_the_delivery_and_its_schema_drift() {
    let drifts: Arc<Mutex<Vec<Option<Vec<String>>>>> = Arc::default();
    let seen = Arc::clone(&drifts);
    let server = Server::start(move |b| {
        b.on_outcome(move |report: &Report<'_>| {
            let drift = report.delivery().map(|d| {
                d.schema_drift()
                    .iter()
                    .map(|f| format!("{}:{}", f.field, f.kind.as_str()))
                    .collect()
            });
            seen.lock().unwrap().push(drift);
        })
    })
    .await;
    let client = client();
    let body = r#"{"id":"evt_d","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c1","aiScore":"n/a"}}"#;
    let drifted = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_d")
        .sign(SECRET);
    assert_eq!(
        deliver(&client, &server, &drifted).await.status,
        StatusCode::OK
    );
    let forged = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_f")
        .sign("guess");
    assert_eq!(
        deliver(&client, &server, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    let drifts = drifts.lock().unwrap();
    let missing = [
        "agentId",
        "agentName",
        "userId",
        "teamMemberUserId",
        "duration",
    ];
    let mut expected: Vec<String> = missing.iter().map(|f| format!("{f}:missing")).collect();
    expected.insert(5, "aiScore:other_type".to_owned());
    expected.push("timestamp:missing".to_owned());
    assert_eq!(*drifts, vec![Some(expected), None]);
}
