//! The Redis de-dup store against a real `redis-server` started by the tests
//! (nothing mocked): several replicas behind real HTTP servers sharing one
//! Redis, claim expiry, token ownership, Redis crashing and coming back.
//!
//! (About 1150 lines, one file on purpose: the store against one Redis, plain and TLS. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)
//!
//! The same over TLS (`rediss://`), with a CA and server certificate made by
//! the test; and no error or `Debug` output ever shows a password.
//!
//! Without `redis-server` on `PATH` each test prints a SKIPPED line and
//! passes, unless `CI` is set.

use kendo_test_support::redis_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeKey, DedupeStore};
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, Rejection, SignedDelivery, StoreErrorPolicy, TestDelivery,
};
use kendo_webhooks_redis::RedisStore;
use rand::seq::SliceRandom;
use rand::Rng;
use redis_server::{RedisServer, TlsPem};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const SECRET: &str = "whsec_redis_store_test";
const PATH: &str = "/webhooks/kendo";
/// Upper bound on any single HTTP exchange in these tests.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The effects of processing, shared by all replicas (the "database").
#[derive(Default)]
struct Effects {
    per_event: Mutex<HashMap<String, usize>>,
}

impl Effects {
    fn count(&self, event_id: &str) -> usize {
        self.per_event
            .lock()
            .unwrap()
            .get(event_id)
            .copied()
            .unwrap_or(0)
    }
}

/// One replica's inner service.
#[derive(Clone)]
struct Inner {
    effects: Arc<Effects>,
    calls: Arc<AtomicUsize>,
    /// Answer 500 (after recording nothing) instead of 200.
    fail: Arc<AtomicBool>,
    /// The next call never answers (until its request is dropped).
    hang: Arc<AtomicBool>,
    /// Simulate a little work, so copies overlap while in flight.
    work: bool,
}

async fn handle(
    State(inner): State<Inner>,
    Extension(delivery): Extension<Delivery>,
) -> StatusCode {
    inner.calls.fetch_add(1, Ordering::SeqCst);
    if inner.hang.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if inner.work {
        let micros = rand::rng().random_range(0..3_000);
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
    if inner.fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    *inner
        .effects
        .per_event
        .lock()
        .unwrap()
        .entry(delivery.event_id().to_owned())
        .or_default() += 1;
    StatusCode::OK
}

/// A receiver replica: a real HTTP server with the layer over `store`.
struct Replica {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start(
        store: RedisStore,
        policy: StoreErrorPolicy,
        effects: &Arc<Effects>,
        work: bool,
    ) -> Self {
        Self::start_waiting(store, policy, effects, work, Duration::ZERO).await
    }

    async fn start_waiting(
        store: RedisStore,
        policy: StoreErrorPolicy,
        effects: &Arc<Effects>,
        work: bool,
        in_flight_wait: Duration,
    ) -> Self {
        let layer = KendoWebhookLayer::builder()
            .secret(SECRET)
            .dedupe_store(store)
            .store_error_policy(policy)
            // 409 at once, so these tests see each claim's state directly;
            // the wait has tests of its own.
            .in_flight_wait(in_flight_wait)
            .build()
            .expect("valid layer");
        let inner = Inner {
            effects: Arc::clone(effects),
            calls: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(AtomicBool::new(false)),
            hang: Arc::new(AtomicBool::new(false)),
            work,
        };
        let (calls, fail) = (Arc::clone(&inner.calls), Arc::clone(&inner.fail));
        let hang = Arc::clone(&inner.hang);
        let router = Router::new()
            .route(PATH, post(handle))
            .layer(layer)
            .with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("server runs");
        });
        Self {
            addr,
            calls,
            fail,
            hang,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a replica answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    /// `x-kendo-webhook-rejection` when the layer refused the request, or
    /// `duplicate` when it answered `x-kendo-webhook-duplicate: true`.
    reason: Option<String>,
}

impl Answer {
    /// Answered by the inner service (the delivery was processed or failed).
    fn processed(&self) -> bool {
        self.reason.is_none()
    }
}

async fn send(client: &HttpClient, replica_url: &str, delivery: &SignedDelivery) -> Answer {
    let request = delivery.request(replica_url).expect("valid request");
    let exchange = async {
        let response = client.request(request).await.expect("replica answers");
        let status = response.status();
        let duplicate = response
            .headers()
            .get("x-kendo-webhook-duplicate")
            .is_some_and(|v| v == "true");
        let reason = response
            .headers()
            .get("x-kendo-webhook-rejection")
            .map(|v| v.to_str().expect("ASCII reason").to_owned())
            .or_else(|| duplicate.then(|| "duplicate".to_owned()));
        response.into_body().collect().await.expect("body");
        Answer { status, reason }
    };
    tokio::time::timeout(REQUEST_DEADLINE, exchange)
        .await
        .expect("a replica answers within the request deadline")
}

/// The store key the layer derives for delivery `n` (its delivery id bound
/// to its event id, see `DedupeKey::key_for`).
fn key_of(n: usize) -> String {
    let d = delivery(n);
    let parsed = Delivery::parse(d.body().clone(), d.delivery_id(), d.event()).expect("valid");
    DedupeKey::DeliveryId.key_for(&parsed)
}

fn delivery(n: usize) -> SignedDelivery {
    let body = TestDelivery::example("call.uploaded")
        .event_id(format!("evt_{n}"))
        .created_at("2026-03-05T12:00:00Z")
        .body();
    SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id(format!("dlv_{n}"))
        .sign(SECRET)
}

/// A store on the test server. Its timeout is generous: these tests are
/// about de-duplication, and a loaded CI machine must not turn a slow
/// answer into a store error (the timeout has tests of its own).
async fn store(redis: &RedisServer, namespace: &str) -> RedisStore {
    RedisStore::builder(redis.url())
        .namespace(namespace)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .expect("connect to the test redis-server")
}

fn answer(reason: Rejection) -> Answer {
    Answer {
        status: reason.status(),
        reason: Some(reason.as_str().to_owned()),
    }
}

/// The layer's answer to a delivery it already processed.
fn already_processed() -> Answer {
    Answer {
        status: StatusCode::OK,
        reason: Some("duplicate".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_process_every_delivery_exactly_once() {
    let Some(redis) = RedisServer::start_or_skip("two_replicas_exactly_once") else {
        return;
    };
    const DELIVERIES: usize = 1_000;
    const IN_FLIGHT: usize = 32;
    let effects = Arc::new(Effects::default());
    // Fail-closed with a generous timeout: a store failure shows up as a 503
    // (and fails the test) instead of being absorbed by processing twice.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::builder(redis.url())
            .namespace("exactly-once")
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .expect("connect");
        let policy = StoreErrorPolicy::FailClosed;
        replicas.push(Replica::start(store, policy, &effects, true).await);
    }
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();

    // Each delivery 1–3 times, every copy to a random replica, shuffled.
    let mut rng = rand::rng();
    let mut sends = Vec::new();
    for n in 0..DELIVERIES {
        for _ in 0..rng.random_range(1..=3) {
            sends.push((n, rng.random_range(0..urls.len())));
        }
    }
    sends.shuffle(&mut rng);
    let total_sends = sends.len();

    let client = client();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for (n, replica) in sends {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
        let (client, url) = (client.clone(), urls[replica].clone());
        tasks.spawn(async move {
            let answer = send(&client, &url, &delivery(n)).await;
            drop(permit);
            (n, answer)
        });
    }
    let mut answers: HashMap<usize, Vec<Answer>> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, answer) = joined.expect("sender task");
        answers.entry(n).or_default().push(answer);
    }
    let elapsed = started.elapsed();

    let duplicate = already_processed();
    let in_flight = answer(Rejection::InFlight);
    let (mut duplicates, mut conflicts) = (0, 0);
    for n in 0..DELIVERIES {
        let answers = &answers[&n];
        let processed: Vec<_> = answers.iter().filter(|a| a.processed()).collect();
        assert_eq!(processed.len(), 1, "delivery {n}: {answers:?}");
        assert_eq!(
            processed[0].status,
            StatusCode::OK,
            "delivery {n}: {answers:?}"
        );
        for other in answers.iter().filter(|a| !a.processed()) {
            assert!(
                *other == duplicate || *other == in_flight,
                "delivery {n}: unexpected {other:?}"
            );
            duplicates += usize::from(*other == duplicate);
            conflicts += usize::from(*other == in_flight);
        }
        assert_eq!(effects.count(&format!("evt_{n}")), 1, "delivery {n}");
    }
    let calls: Vec<usize> = replicas.iter().map(Replica::calls).collect();
    assert_eq!(calls.iter().sum::<usize>(), DELIVERIES, "{calls:?}");
    assert!(
        calls.iter().all(|&c| c > 0),
        "both replicas served: {calls:?}"
    );
    // Redis holds a done mark for every delivery, under the namespace.
    for n in [0, DELIVERIES / 2, DELIVERIES - 1] {
        let value = redis
            .command(&["GET", &format!("exactly-once:{}", key_of(n))])
            .expect("GET");
        assert_eq!(value, "done", "delivery {n}");
    }
    println!(
        "{DELIVERIES} deliveries, {total_sends} sends, {IN_FLIGHT} in flight: processed once \
         each (replica calls {calls:?}), {duplicates} answered as duplicates, {conflicts} as \
         in flight (409), in {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_released_and_its_retry_on_another_replica_is_processed() {
    let Some(redis) = RedisServer::start_or_skip("release_on_failure") else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let policy = StoreErrorPolicy::FailClosed;
    let a = Replica::start(store(&redis, "release").await, policy, &effects, false).await;
    let b = Replica::start(store(&redis, "release").await, policy, &effects, false).await;
    a.fail.store(true, Ordering::SeqCst);
    let client = client();
    let d = delivery(1);

    let first = send(&client, &a.url(), &d).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(first.processed(), "{first:?}");
    assert_eq!(redis.command(&["EXISTS", "release:dlv_1"]).unwrap(), ":0");

    let retry = send(&client, &b.url(), &d).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(retry.processed(), "{retry:?}");
    assert_eq!(effects.count("evt_1"), 1);

    // Done now, on every replica, even the failing one.
    assert_eq!(send(&client, &a.url(), &d).await, already_processed());
    assert_eq!(send(&client, &b.url(), &d).await, already_processed());
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(effects.count("evt_1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_attempt_on_one_replica_is_released_for_the_retry_on_another() {
    let Some(redis) = RedisServer::start_or_skip("release_on_drop") else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let policy = StoreErrorPolicy::FailClosed;
    let a = Replica::start(store(&redis, "drop").await, policy, &effects, false).await;
    let b = Replica::start(store(&redis, "drop").await, policy, &effects, false).await;
    a.hang.store(true, Ordering::SeqCst);
    let d = delivery(5);

    // Kendo gives up on the first attempt (its timeout) and closes the
    // connection; replica A's request future is dropped mid-service.
    let request = d.request(&a.url()).expect("valid request");
    let first = client();
    let gave_up = tokio::time::timeout(Duration::from_millis(300), first.request(request)).await;
    assert!(gave_up.is_err(), "the first attempt hangs in replica A");
    drop(first);
    assert_eq!(a.calls(), 1);

    // The retry on B is refused while A still holds the claim, and processed
    // once A noticed the dropped connection and released it in Redis (the
    // layer's drop guard settles asynchronously for a networked store).
    let retry_client = client();
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answers.len() < 400 && Instant::now() < deadline {
        let answer = send(&retry_client, &b.url(), &d).await;
        let done = answer.processed();
        answers.push(answer);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let last = answers.last().expect("at least one retry");
    assert_eq!(last.status, StatusCode::OK, "{answers:?}");
    assert!(last.processed(), "{answers:?}");
    let refusals = &answers[..answers.len() - 1];
    assert!(
        refusals.iter().all(|a| *a == answer(Rejection::InFlight)),
        "{answers:?}"
    );
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(effects.count("evt_5"), 1);
    assert_eq!(
        redis
            .command(&["GET", &format!("drop:{}", key_of(5))])
            .unwrap(),
        "done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_claim_lapses_with_its_lease_and_a_waiting_copy_is_processed() {
    let Some(redis) = RedisServer::start_or_skip("lease") else {
        return;
    };
    let effects = Arc::new(Effects::default());
    let policy = StoreErrorPolicy::FailClosed;
    let wait = Duration::from_secs(4);
    let live =
        Replica::start_waiting(store(&redis, "lease").await, policy, &effects, false, wait).await;
    let client = client();
    let d = delivery(7);
    // The "crashed" replica claims and never renews nor settles.
    let crashed = RedisStore::builder(redis.url())
        .namespace("lease")
        .lease(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .expect("connect");
    let key = key_of(7);
    let never_settled = ClaimToken::generate();
    let claim = crashed.claim(&key, never_settled).await.expect("claim");
    assert_eq!(claim, Claim::Acquired);
    let lease = pttl(&redis, &format!("lease:{key}"));
    assert!(lease > 0 && lease <= 2_000, "{lease}");

    // One copy waits out the lapse (under 2 s, inside its 4 s wait) and is
    // processed; no 409 is ever answered.
    let first = send(&client, &live.url(), &d).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert!(first.processed(), "{first:?}");
    assert_eq!(live.calls(), 1);
    assert_eq!(effects.count("evt_7"), 1);
    assert_eq!(send(&client, &live.url(), &d).await, already_processed());
}

#[tokio::test]
async fn renewing_extends_only_the_holders_lease() {
    let Some(redis) = RedisServer::start_or_skip("renew") else {
        return;
    };
    let a = RedisStore::builder(redis.url())
        .namespace("renew")
        .lease(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    assert_eq!(a.lease(), Some(Duration::from_secs(2)));
    let holder = ClaimToken::generate();
    assert_eq!(a.claim("k", holder).await.unwrap(), Claim::Acquired);
    redis.command(&["PEXPIRE", "renew:k", "500"]).unwrap();
    assert!(a.renew("k", holder).await.unwrap());
    let renewed = pttl(&redis, "renew:k");
    assert!(renewed > 500 && renewed <= 2_000, "{renewed}");
    // Another token cannot renew it, and a lapsed lease is not revived.
    assert!(!a.renew("k", ClaimToken::generate()).await.unwrap());
    redis.command(&["DEL", "renew:k"]).unwrap();
    assert!(!a.renew("k", holder).await.unwrap());
    assert_eq!(redis.command(&["EXISTS", "renew:k"]).unwrap(), ":0");
}

#[tokio::test]
async fn a_stale_token_cannot_settle_a_newer_claim() {
    let Some(redis) = RedisServer::start_or_skip("token_ownership") else {
        return;
    };
    let slow = store(&redis, "tokens").await;
    let other = store(&redis, "tokens").await;
    let stale = ClaimToken::generate();
    assert_eq!(slow.claim("k", stale).await.unwrap(), Claim::Acquired);
    slow.release("k", stale).await.unwrap();
    let current = ClaimToken::generate();
    assert_eq!(other.claim("k", current).await.unwrap(), Claim::Acquired);
    assert_ne!(stale, current);

    slow.release("k", stale).await.unwrap();
    assert_eq!(other.claim("k", stale).await.unwrap(), Claim::InFlight);
    slow.complete("k", stale).await.unwrap();
    assert_eq!(other.claim("k", stale).await.unwrap(), Claim::InFlight);
    let held = redis.command(&["GET", "tokens:k"]).unwrap();
    assert_eq!(held, format!("inflight:{:016x}", current.value()));

    other.complete("k", current).await.unwrap();
    assert_eq!(slow.claim("k", stale).await.unwrap(), Claim::Done);
    // Releasing after completion changes nothing either.
    other.release("k", current).await.unwrap();
    assert_eq!(slow.claim("k", stale).await.unwrap(), Claim::Done);
}

#[tokio::test]
async fn a_completion_after_the_claim_expired_still_marks_the_delivery_done() {
    let Some(redis) = RedisServer::start_or_skip("complete_after_expiry") else {
        return;
    };
    let slow = RedisStore::builder(redis.url())
        .namespace("late")
        .lease(Duration::from_millis(100))
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let token = ClaimToken::generate();
    assert_eq!(slow.claim("k", token).await.unwrap(), Claim::Acquired);
    // The service outlives the claim: wait until Redis expired it (bounded).
    let mut polls = 0;
    while redis.command(&["EXISTS", "late:k"]).unwrap() != ":0" && polls < 200 {
        polls += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(redis.command(&["EXISTS", "late:k"]).unwrap(), ":0");
    // Its effect happened, so the late completion still records it.
    slow.complete("k", token).await.unwrap();
    assert_eq!(redis.command(&["GET", "late:k"]).unwrap(), "done");
    assert_eq!(
        slow.claim("k", ClaimToken::generate()).await.unwrap(),
        Claim::Done
    );
}

#[tokio::test]
async fn keys_are_namespaced_and_carry_their_ttls() {
    let Some(redis) = RedisServer::start_or_skip("namespaces_and_ttls") else {
        return;
    };
    let lease = Duration::from_secs(30);
    let done_ttl = Duration::from_secs(3_600);
    let a = RedisStore::builder(redis.url())
        .namespace("svc-a")
        .lease(lease)
        .done_ttl(done_ttl)
        .build()
        .await
        .unwrap();
    let b = store(&redis, "svc-b").await;

    let token = ClaimToken::generate();
    assert_eq!(a.claim("dlv", token).await.unwrap(), Claim::Acquired);
    assert_eq!(a.redis_key("dlv"), "svc-a:dlv");
    let claim_pttl = pttl(&redis, "svc-a:dlv");
    assert!(claim_pttl > 0 && claim_pttl <= 30_000, "{claim_pttl}");
    // Another namespace does not see it.
    let fresh = ClaimToken::generate();
    assert_eq!(b.claim("dlv", fresh).await.unwrap(), Claim::Acquired);

    a.complete("dlv", token).await.unwrap();
    assert_eq!(redis.command(&["GET", "svc-a:dlv"]).unwrap(), "done");
    let done_pttl = pttl(&redis, "svc-a:dlv");
    assert!(done_pttl > 30_000 && done_pttl <= 3_600_000, "{done_pttl}");
    assert_eq!(a.claim("dlv", fresh).await.unwrap(), Claim::Done);
    assert_eq!(b.claim("dlv", token).await.unwrap(), Claim::InFlight);
}

fn pttl(redis: &RedisServer, key: &str) -> i64 {
    let reply = redis.command(&["PTTL", key]).unwrap();
    reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PTTL {key}: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crash_fail_open_keeps_accepting_fail_closed_answers_503_and_dedupe_recovers() {
    let Some(mut redis) = RedisServer::start_or_skip("redis_crash") else {
        return;
    };
    let effects = Arc::new(Effects::default());
    // Short enough to keep the outage quick, long enough for a loaded
    // machine to answer in time while Redis is up.
    let timeout = Duration::from_secs(1);
    let quick = |ns: &str| {
        RedisStore::builder(redis.url())
            .namespace(ns)
            .timeout(timeout)
            .build()
    };
    let open_store = quick("crash").await.expect("connect");
    let closed_store = quick("crash").await.expect("connect");
    let open = Replica::start(open_store, StoreErrorPolicy::FailOpen, &effects, false).await;
    let closed = Replica::start(closed_store, StoreErrorPolicy::FailClosed, &effects, false).await;
    let client = client();

    // Before the crash: normal de-duplication across both.
    let before = delivery(1);
    assert!(send(&client, &open.url(), &before).await.processed());
    assert_eq!(
        send(&client, &closed.url(), &before).await,
        already_processed()
    );

    redis.kill();

    // Fail-open: processed, answered 2xx, without de-duplication (a second
    // copy is processed again: the documented price of fail-open).
    let during = delivery(2);
    for _ in 0..2 {
        let started = Instant::now();
        let answer = send(&client, &open.url(), &during).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(answer.processed(), "{answer:?}");
        println!(
            "fail-open answer with Redis down took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(effects.count("evt_2"), 2);

    // Fail-closed: 503, inner never called, Kendo retries later.
    let refused = delivery(3);
    let started = Instant::now();
    assert_eq!(
        send(&client, &closed.url(), &refused).await,
        answer(Rejection::StoreUnavailable)
    );
    println!(
        "fail-closed 503 with Redis down took {:?}",
        started.elapsed()
    );
    assert_eq!(closed.calls(), 0);

    redis.restart();

    // Kendo's retry of the refused delivery goes through once the
    // connection manager has reconnected; poll, bounded in count and time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempts = 0;
    let retried = loop {
        let answer = send(&client, &closed.url(), &refused).await;
        attempts += 1;
        if answer != self::answer(Rejection::StoreUnavailable)
            || attempts >= 200
            || Instant::now() > deadline
        {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        retried.status,
        StatusCode::OK,
        "after {attempts} attempts: {retried:?}"
    );
    assert!(retried.processed(), "{retried:?}");
    assert_eq!(effects.count("evt_3"), 1);

    // De-duplication works again, across replicas. The fail-open replica
    // may still be reconnecting (processing without Redis), so send it fresh
    // deliveries until one is recorded as done; bounded in count.
    let mut recorded = None;
    for n in 100..150 {
        let d = delivery(n);
        let answer = send(&client, &open.url(), &d).await;
        assert!(
            answer.processed() && answer.status == StatusCode::OK,
            "{answer:?}"
        );
        if redis
            .command(&["GET", &format!("crash:{}", key_of(n))])
            .unwrap()
            == "done"
        {
            recorded = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = recorded.expect("the fail-open replica records deliveries in Redis again");
    let calls_before = (open.calls(), closed.calls());
    assert_eq!(
        send(&client, &closed.url(), &after).await,
        already_processed()
    );
    assert_eq!(
        send(&client, &open.url(), &after).await,
        already_processed()
    );
    assert_eq!(
        send(&client, &closed.url(), &refused).await,
        already_processed()
    );
    assert_eq!((open.calls(), closed.calls()), calls_before);
}

#[tokio::test]
async fn a_frozen_redis_times_out_instead_of_hanging() {
    let Some(redis) = RedisServer::start_or_skip("frozen_redis") else {
        return;
    };
    let store = RedisStore::builder(redis.url())
        .namespace("frozen")
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    redis.pause();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        store.claim("k", ClaimToken::generate()),
    )
    .await;
    redis.resume();
    let error = outcome
        .expect("the store's own timeout fires first")
        .expect_err("a frozen Redis is an error");
    let message = error.to_string();
    assert!(message.contains("timed out after 200 ms"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");

    // Thawed, it answers again through the same store (bounded patience).
    let mut last = None;
    for _ in 0..100 {
        match store.claim("after", ClaimToken::generate()).await {
            Ok(claim) => {
                last = Some(claim);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(last, Some(Claim::Acquired));
}

#[tokio::test]
async fn build_errors_say_what_is_wrong() {
    let invalid = RedisStore::builder("http://not-redis")
        .build()
        .await
        .unwrap_err();
    assert!(
        invalid.to_string().contains("not a valid Redis URL"),
        "{invalid}"
    );

    let tls_without_tls = RedisStore::builder("redis://:pw@127.0.0.1:1/")
        .tls_ca_certificate(TestPki::new("other").ca_pem)
        .build()
        .await
        .unwrap_err();
    let message = tls_without_tls.to_string();
    assert!(message.contains("rediss://"), "{message}");
    assert!(!message.contains(":pw@"), "{message}");

    let insecure = RedisStore::builder("rediss://127.0.0.1:1/#insecure")
        .build()
        .await
        .unwrap_err();
    assert!(insecure.to_string().contains("#insecure"), "{insecure}");

    let not_pem = RedisStore::builder("rediss://127.0.0.1:1/")
        .tls_ca_certificate("not a certificate")
        .build()
        .await
        .unwrap_err();
    assert!(not_pem.to_string().contains("CA certificate"), "{not_pem}");

    let zero = RedisStore::builder("redis://127.0.0.1:1/")
        .lease(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(zero.to_string().contains("lease"), "{zero}");

    // Nothing listens on a port we just released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        RedisStore::builder(format!("redis://127.0.0.1:{port}/")).build(),
    )
    .await
    .expect("build gives up within its timeout")
    .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("Redis"), "{message}");
}

#[tokio::test]
async fn credentials_are_used_and_never_shown() {
    let password = "s3cret-pw";
    let Some(redis) =
        RedisServer::start_with_args_or_skip("credentials", &["--requirepass", password])
    else {
        return;
    };
    let url = format!("redis://:{password}@127.0.0.1:{}/", redis.port());
    let builder = RedisStore::builder(url.as_str()).namespace("auth");
    assert!(!format!("{builder:?}").contains(password), "{builder:?}");
    let store = builder.build().await.expect("right password");
    let debug = format!("{store:?}");
    assert!(!debug.contains(password), "{debug}");
    assert!(
        debug.contains(&format!("127.0.0.1:{}", redis.port())),
        "{debug}"
    );
    assert_eq!(
        store.claim("k", ClaimToken::generate()).await.unwrap(),
        Claim::Acquired
    );

    let wrong = format!("redis://:wrong@127.0.0.1:{}/", redis.port());
    let error = RedisStore::builder(wrong).build().await.unwrap_err();
    let message = format!("{error} / {error:?}");
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains("wrong@"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_complete_throughput_against_local_redis() {
    let Some(redis) = RedisServer::start_or_skip("throughput") else {
        return;
    };
    const PAIRS: usize = 20_000;
    const TASKS: usize = 32;
    let store = Arc::new(store(&redis, "bench").await);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut acquired = 0;
            for n in (task..PAIRS).step_by(TASKS) {
                let key = format!("k{n}");
                let token = ClaimToken::generate();
                if store.claim(&key, token).await.expect("claim") == Claim::Acquired {
                    store.complete(&key, token).await.expect("complete");
                    acquired += 1;
                }
            }
            acquired
        });
    }
    let mut acquired = 0;
    while let Some(joined) = tasks.join_next().await {
        acquired += joined.expect("task");
    }
    let elapsed = started.elapsed();
    assert_eq!(acquired, PAIRS, "every distinct key is acquired once");
    let token = ClaimToken::generate();
    assert_eq!(store.claim("k0", token).await.unwrap(), Claim::Done);
    assert_eq!(
        store
            .claim(&format!("k{}", PAIRS - 1), token)
            .await
            .unwrap(),
        Claim::Done
    );
    println!(
        "RedisStore throughput: {:.0} claim+complete pairs/s ({PAIRS} pairs, {TASKS} tasks, \
         {elapsed:?}, this build's profile, local redis-server)",
        PAIRS as f64 / elapsed.as_secs_f64()
    );
}

/// A CA and a server certificate it signed, for `localhost` and `127.0.0.1`.
struct TestPki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl TestPki {
    /// `name` tells CAs apart (a CA of the same name and another key fails
    /// differently: bad signature rather than unknown issuer).
    fn new(name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, format!("kendo-webhooks test CA {name}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).expect("self-sign the CA").pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert_pem = server
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate")
            .pem();
        Self {
            ca_pem,
            server_cert_pem,
            server_key_pem: server_key.serialize_pem(),
        }
    }

    fn start_server(&self, test: &str) -> Option<RedisServer> {
        RedisServer::start_tls_or_skip(
            test,
            &TlsPem {
                cert: &self.server_cert_pem,
                key: &self.server_key_pem,
                ca: &self.ca_pem,
            },
        )
    }
}

#[tokio::test]
async fn claims_round_trip_over_tls_with_a_private_ca() {
    let pki = TestPki::new("redis");
    let Some(redis) = pki.start_server("tls_round_trip") else {
        return;
    };
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let tls_store = || {
        RedisStore::builder(redis.url())
            .namespace("tls")
            .timeout(Duration::from_secs(5))
            .tls_ca_certificate(pki.ca_pem.as_bytes())
            .build()
    };
    let a = tls_store().await.expect("connect over TLS");
    let b = tls_store().await.expect("connect over TLS");

    let token = ClaimToken::generate();
    let other = ClaimToken::generate();
    assert_eq!(a.claim("dlv", token).await.expect("claim"), Claim::Acquired);
    assert_eq!(b.claim("dlv", other).await.expect("claim"), Claim::InFlight);
    a.complete("dlv", token).await.expect("complete");
    assert_eq!(b.claim("dlv", other).await.expect("claim"), Claim::Done);

    assert_eq!(
        b.claim("other", token).await.expect("claim"),
        Claim::Acquired
    );
    b.release("other", token).await.expect("release");
    assert_eq!(
        a.claim("other", other).await.expect("claim"),
        Claim::Acquired
    );

    // The host name in the URL is checked against the certificate too.
    let by_name = RedisStore::builder(format!("rediss://localhost:{}/", redis.port()))
        .timeout(Duration::from_secs(5))
        .tls_ca_certificate(pki.ca_pem.clone())
        .build()
        .await
        .expect("the certificate names localhost");
    assert_eq!(
        by_name
            .claim("by-name", ClaimToken::generate())
            .await
            .expect("claim"),
        Claim::Acquired
    );
}

#[tokio::test]
async fn a_tls_redis_signed_by_another_ca_fails_at_build_saying_why() {
    let pki = TestPki::new("redis");
    let Some(redis) = pki.start_server("tls_wrong_ca") else {
        return;
    };
    let other_ca = TestPki::new("other").ca_pem;
    let wrong_ca = RedisStore::builder(redis.url())
        .timeout(Duration::from_secs(5))
        .tls_ca_certificate(other_ca)
        .build();
    let error = tokio::time::timeout(Duration::from_secs(30), wrong_ca)
        .await
        .expect("build gives up within its timeout")
        .expect_err("a certificate from another CA is refused");
    let message = error.to_string();
    assert!(message.contains("TLS handshake"), "{message}");
    assert!(message.contains("not trusted"), "{message}");
    assert!(message.contains("tls_ca_certificate"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", redis.port())),
        "{message}"
    );

    // Without a CA, the system's roots do not know the test CA either.
    let system_roots = RedisStore::builder(redis.url())
        .timeout(Duration::from_secs(5))
        .build();
    let error = tokio::time::timeout(Duration::from_secs(30), system_roots)
        .await
        .expect("build gives up within its timeout")
        .expect_err("an unknown CA is refused");
    assert!(error.to_string().contains("not trusted"), "{error}");
}

#[tokio::test]
async fn plain_redis_urls_to_a_tls_port_fail_at_build() {
    let pki = TestPki::new("redis");
    let Some(redis) = pki.start_server("tls_port_plain_url") else {
        return;
    };
    let plain = RedisStore::builder(format!("redis://127.0.0.1:{}/", redis.port()))
        .timeout(Duration::from_secs(2))
        .build();
    let error = tokio::time::timeout(Duration::from_secs(30), plain)
        .await
        .expect("build gives up within its timeout")
        .expect_err("a TLS port does not answer plain Redis");
    assert!(error.to_string().contains("Redis"), "{error}");
}

/// Every text `error` can show: `Display`, `Debug`, and both for each
/// error in its `source()` chain.
fn every_text_of(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut texts = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        texts.push(current.to_string());
        texts.push(format!("{current:?}"));
        next = current.source();
    }
    texts
}

fn assert_hidden(secrets: &[&str], texts: &[String], context: &str) {
    for text in texts {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{context}: {secret:?} shown in {text:?}"
            );
        }
    }
}

/// Passwords as written in URLs (some unencoded on purpose), with the
/// pieces of them that must never be shown. `Kx7q` and `Wm3z` cannot occur
/// in any message by chance.
const ODD_PASSWORDS: [(&str, &[&str]); 8] = [
    ("Kx7q/Wm3z", &["Kx7q", "Wm3z"]),
    ("Kx7q?Wm3z", &["Kx7q", "Wm3z"]),
    ("Kx7q#Wm3z", &["Kx7q", "Wm3z"]),
    ("Kx7q@Wm3z", &["Kx7q", "Wm3z"]),
    ("Kx7q:Wm3z", &["Kx7q", "Wm3z"]),
    ("Zm9v/YmFy+YmF6==", &["Zm9v", "YmFy", "YmF6"]),
    ("Kx7q%2FWm3z%40", &["Kx7q", "Wm3z"]),
    ("6380/Wm3z", &["Wm3z"]),
];

#[tokio::test]
async fn build_errors_and_debug_never_show_odd_passwords() {
    // Nothing listens on a port we just released: parsable URLs fail to
    // connect, the others fail before connecting.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (password, secrets) in ODD_PASSWORDS {
        for url in [
            format!("redis://:{password}@127.0.0.1:{port}/0"),
            format!("redis://app:{password}@127.0.0.1:{port}/0"),
            format!("rediss://:{password}@127.0.0.1:{port}/0"),
            // A lone word before `@` is taken for a password too (unless it
            // holds `:`, which makes it `user:password`).
            format!(
                "redis://{}@127.0.0.1:{port}/0",
                password.replace(':', "%3A")
            ),
            format!("redis://:{password}@[::1]:{port}/0"),
            format!(":{password}@127.0.0.1:{port}/0"),
            format!("app:{password}@127.0.0.1:{port}"),
            format!("redis+unix:///nonexistent/redis.sock?pass={password}"),
        ] {
            let builder = RedisStore::builder(url.as_str()).timeout(Duration::from_millis(300));
            assert_hidden(secrets, &[format!("{builder:?}")], &url);
            let built = tokio::time::timeout(Duration::from_secs(10), builder.build())
                .await
                .expect("build gives up within its timeout");
            let error = built.expect_err("nothing to connect to");
            assert_hidden(secrets, &every_text_of(&error), &url);
        }
    }
}

#[tokio::test]
async fn an_odd_password_percent_encoded_works_and_is_never_shown() {
    let password = "Kx7q/Wm3z?@#:";
    let Some(redis) =
        RedisServer::start_with_args_or_skip("odd_password", &["--requirepass", password])
    else {
        return;
    };
    let encoded = "Kx7q%2FWm3z%3F%40%23%3A";
    let secrets = ["Kx7q", "Wm3z", encoded, password];
    let url = format!("redis://:{encoded}@127.0.0.1:{}/", redis.port());
    let builder = RedisStore::builder(url.as_str()).namespace("odd");
    assert_hidden(&secrets, &[format!("{builder:?}")], &url);
    let store = builder
        .build()
        .await
        .expect("the decoded password is right");
    assert_hidden(&secrets, &[format!("{store:?}")], &url);
    assert_eq!(
        store.claim("k", ClaimToken::generate()).await.unwrap(),
        Claim::Acquired
    );

    for wrong in ["Kx7q%2FWm3z", "Kx7q/Wm3z?@#:"] {
        let url = format!("redis://app:{wrong}@127.0.0.1:{}/", redis.port());
        let error = RedisStore::builder(url.as_str())
            .build()
            .await
            .expect_err("wrong password or URL");
        assert_hidden(&secrets, &every_text_of(&error), &url);
    }
}
