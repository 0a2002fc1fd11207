//! Exactly-once fault simulation over real HTTP.
//!
//! A simulated Kendo sends `KENDO_SIM_DELIVERIES` deliveries (default 2,000;
//! the figure is 10,000) to an axum server on 127.0.0.1 behind
//! `KendoWebhookLayer`, with hyper-util's legacy client and Kendo's retry
//! policy: 3 attempts, backoff 1 / 2 / 4 ms (Kendo's 1 / 2 / 4 s scaled
//! down), a per-request timeout. 30 % of the deliveries are sent twice: a
//! second, independent delivery with the same delivery id and its own
//! retries. The inner service fails 20 % of calls with 500, and stalls 3 %
//! past the client's timeout (the client gives up and drops the connection).
//! Every random choice comes from one `StdRng` seeded with `KENDO_SIM_SEED`
//! (default fixed); the seed is printed in every failure message. The fault
//! of each attempt is drawn by the sender and passed in a test-only header,
//! so a run is reproducible whatever the interleaving.
//!
//! # What is asserted (`every_acknowledged_delivery_was_committed_exactly_once`)
//!
//! The inner service commits its effect **at the end**, in the same poll
//! that returns its 200, after any stall: a future dropped during the stall
//! commits nothing, and the layer's claim is released so the retry is
//! processed. Then, per delivery id:
//! - no effect is committed twice;
//! - every delivery the sender saw acknowledged (2xx) has its effect;
//! - a delivery without an effect is one none of whose attempts was
//!   acknowledged (about 0.8 % of single deliveries at these rates: all three
//!   attempts failing). Those are counted and printed, as are the ones that
//!   were not acknowledged but whose effect was committed anyway (a stalled
//!   call that hyper did not drop, finishing after the sender gave up).
//!
//! # The case no middleware can close
//!
//! If the inner service commits its effect and the request future is then
//! dropped before it answers (client timeout, connection closed), the layer
//! cannot know the effect happened: it sees a request that never answered,
//! releases the claim, and Kendo's retry is processed again — the effect
//! happens twice. Holding the claim instead would lose every delivery whose
//! effect had *not* happened yet. Only the sink can close this: make the
//! effect idempotent, an insert-if-absent keyed on the signed event id (as
//! `apps/crm-ingest` does with its inbox table).
//! `a_dropped_future_after_the_commit_is_processed_again_and_an_idempotent_sink_absorbs_it`
//! shows the double processing deterministically (one `oneshot` call, future
//! dropped after the commit, then the retry), and
//! `an_idempotent_sink_keeps_exactly_once_when_effects_commit_before_a_stall`
//! runs the simulation with effects committed *before* the stall: raw
//! commits may then exceed one per delivery (counted and printed, not
//! asserted, since it depends on when hyper notices a closed connection),
//! while the idempotent sink holds every acknowledged delivery exactly once.

use kendo_test_support::delivery_server as common;
use kendo_test_support::redis_server;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, KendoWebhookLayerBuilder, Outcome, Report, SignedDelivery,
    TestDelivery,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

use common::{HttpClient, PATH, SECRET};

const DEFAULT_DELIVERIES: usize = 2_000;
const DEFAULT_SEED: u64 = 0x4b45_4e44_4f5f_5349; // "KENDO_SI"
/// The simulated Kendo's per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a stalling inner call waits: well past the client's timeout.
const STALL: Duration = Duration::from_millis(600);
/// Kendo's backoff (1 s, 2 s, 4 s) scaled down to milliseconds.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
];
const ATTEMPTS: usize = 3;
const FAIL_RATE: f64 = 0.20;
const STALL_RATE: f64 = 0.03;
const TWICE_RATE: f64 = 0.30;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;
/// Test-only header: what the inner service does with this attempt.
const FAULT_HEADER: &str = "x-sim-fault";

/// What the inner service does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Answer,
    Fail,
    Stall,
}

impl Fault {
    fn draw(rng: &mut StdRng) -> Self {
        let roll: f64 = rng.random();
        if roll < FAIL_RATE {
            Self::Fail
        } else if roll < FAIL_RATE + STALL_RATE {
            Self::Stall
        } else {
            Self::Answer
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Fail => "fail",
            Self::Stall => "stall",
        }
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        match headers.get(FAULT_HEADER).map(HeaderValue::as_bytes) {
            Some(b"fail") => Self::Fail,
            Some(b"stall") => Self::Stall,
            _ => Self::Answer,
        }
    }
}

/// When the effect is committed relative to the stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// After the stall, in the poll that answers: a dropped future commits nothing.
    AtTheEnd,
    /// Before the stall: a dropped future has committed (the unclosable case).
    BeforeTheStall,
}

/// The inner service's side effects.
struct Effects {
    commit: Commit,
    /// Every commit, per event id (a plain, non-idempotent effect).
    raw: Mutex<HashMap<String, usize>>,
    /// Insert-if-absent keyed on the event id (an idempotent sink).
    sink: Mutex<HashSet<String>>,
    calls: AtomicUsize,
    stalls_started: AtomicUsize,
    stalls_finished: AtomicUsize,
    stalls_dropped: AtomicUsize,
    rejections: Mutex<HashMap<&'static str, usize>>,
}

impl Effects {
    fn new(commit: Commit) -> Self {
        Self {
            commit,
            raw: Mutex::default(),
            sink: Mutex::default(),
            calls: AtomicUsize::new(0),
            stalls_started: AtomicUsize::new(0),
            stalls_finished: AtomicUsize::new(0),
            stalls_dropped: AtomicUsize::new(0),
            rejections: Mutex::default(),
        }
    }

    fn commit(&self, event_id: &str) {
        *self
            .raw
            .lock()
            .unwrap()
            .entry(event_id.to_owned())
            .or_default() += 1;
        self.sink.lock().unwrap().insert(event_id.to_owned());
    }

    fn stalls_settled(&self) -> bool {
        self.stalls_started.load(Ordering::SeqCst)
            == self.stalls_finished.load(Ordering::SeqCst)
                + self.stalls_dropped.load(Ordering::SeqCst)
    }
}

/// Counts a stalled call as finished or dropped.
struct StallGuard {
    effects: Arc<Effects>,
    finished: bool,
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.effects.stalls_finished
        } else {
            &self.effects.stalls_dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

async fn inner(
    State(effects): State<Arc<Effects>>,
    Extension(delivery): Extension<Delivery>,
    headers: HeaderMap,
) -> StatusCode {
    effects.calls.fetch_add(1, Ordering::SeqCst);
    match Fault::from_headers(&headers) {
        Fault::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Fault::Answer => {
            effects.commit(delivery.event_id());
            StatusCode::OK
        }
        Fault::Stall => {
            effects.stalls_started.fetch_add(1, Ordering::SeqCst);
            let mut guard = StallGuard {
                effects: Arc::clone(&effects),
                finished: false,
            };
            if effects.commit == Commit::BeforeTheStall {
                effects.commit(delivery.event_id());
            }
            tokio::time::sleep(STALL).await;
            // No await between here and the answer: committing and answering
            // happen in one poll, so a dropped future has committed nothing.
            guard.finished = true;
            if effects.commit == Commit::AtTheEnd {
                effects.commit(delivery.event_id());
            }
            StatusCode::OK
        }
    }
}

/// Starts one layered server (a replica) with `configure` applied to its
/// layer; returns its URL. All replicas share `effects` (the "database").
async fn start_server(
    effects: Arc<Effects>,
    configure: impl FnOnce(KendoWebhookLayerBuilder) -> KendoWebhookLayerBuilder,
) -> String {
    let hook_effects = Arc::clone(&effects);
    let builder = KendoWebhookLayer::builder().secret(SECRET);
    let layer = configure(builder)
        .on_outcome(move |report: &Report<'_>| {
            if let Outcome::Rejected(_) | Outcome::Duplicate = report.outcome() {
                *hook_effects
                    .rejections
                    .lock()
                    .unwrap()
                    .entry(report.outcome().as_str())
                    .or_default() += 1;
            }
        })
        .build()
        .expect("valid layer");
    let router = Router::new()
        .route(PATH, post(inner))
        .layer(layer)
        .with_state(effects);
    let addr = common::serve(router).await;
    format!("http://{addr}{PATH}")
}

/// The plan of one delivery: the faults of each copy's attempts.
struct Plan {
    index: usize,
    copies: Vec<(Duration, [Fault; ATTEMPTS])>,
}

fn plans(seed: u64, deliveries: usize) -> Vec<Plan> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..deliveries)
        .map(|index| {
            let faults = |rng: &mut StdRng| [Fault::draw(rng), Fault::draw(rng), Fault::draw(rng)];
            let mut copies = vec![(Duration::ZERO, faults(&mut rng))];
            if rng.random_bool(TWICE_RATE) {
                let delay = Duration::from_millis(rng.random_range(0..20));
                copies.push((delay, faults(&mut rng)));
            }
            Plan { index, copies }
        })
        .collect()
}

/// What the sender saw for one copy.
#[derive(Debug, Default)]
struct CopyOutcome {
    acknowledged: bool,
    statuses: Vec<String>,
}

/// One copy of a delivery, sent as Kendo does: up to three attempts, with
/// backoff, each bounded by the request timeout.
async fn send_copy(
    client: HttpClient,
    replicas: Arc<[String]>,
    first_replica: usize,
    signed: Arc<SignedDelivery>,
    start_after: Duration,
    faults: [Fault; ATTEMPTS],
) -> CopyOutcome {
    tokio::time::sleep(start_after).await;
    let mut outcome = CopyOutcome::default();
    for (attempt, fault) in faults.into_iter().enumerate() {
        // Behind a load balancer: each attempt may land on another replica.
        let url = &replicas[(first_replica + attempt) % replicas.len()];
        let mut request = signed.request(url).expect("valid request");
        request
            .headers_mut()
            .insert(FAULT_HEADER, HeaderValue::from_static(fault.as_str()));
        let exchange = async {
            let response = client.request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(status)) if status.is_success() => {
                outcome.acknowledged = true;
                outcome.statuses.push(status.as_u16().to_string());
                return outcome;
            }
            Ok(Ok(status)) => outcome.statuses.push(status.as_u16().to_string()),
            Ok(Err(error)) => outcome.statuses.push(format!("error: {error}")),
            Err(_elapsed) => outcome.statuses.push("timeout".to_owned()),
        }
        tokio::time::sleep(BACKOFF[attempt]).await;
    }
    outcome
}

/// The figures of one run, checked and printed.
struct Run {
    seed: u64,
    deliveries: usize,
    acknowledged: Vec<bool>,
    copies: usize,
    attempts_by_status: HashMap<String, usize>,
    elapsed: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a valid number")),
        Err(_) => default,
    }
}

/// Runs the simulated Kendo against `replicas` (URLs of servers sharing `effects`).
async fn simulate(effects: Arc<Effects>, replicas: Vec<String>) -> Run {
    let seed = env_or("KENDO_SIM_SEED", DEFAULT_SEED);
    let deliveries = env_or("KENDO_SIM_DELIVERIES", DEFAULT_DELIVERIES);
    let replicas: Arc<[String]> = replicas.into();
    let client = common::client();
    let started = std::time::Instant::now();

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut copies = 0;
    for plan in plans(seed, deliveries) {
        copies += plan.copies.len();
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let body = TestDelivery::example("call.uploaded")
            .event_id(format!("evt_{}", plan.index))
            .created_at("2026-03-05T12:00:00Z")
            .body();
        let signed = Arc::new(
            SignedDelivery::builder(body)
                .event("call.uploaded")
                .delivery_id(format!("dlv_{}", plan.index))
                .sign(SECRET),
        );
        let (client, replicas) = (client.clone(), Arc::clone(&replicas));
        tasks.spawn(async move {
            let mut sends = tokio::task::JoinSet::new();
            for (copy, (delay, faults)) in plan.copies.into_iter().enumerate() {
                let copy = send_copy(
                    client.clone(),
                    Arc::clone(&replicas),
                    plan.index + copy,
                    Arc::clone(&signed),
                    delay,
                    faults,
                );
                sends.spawn(copy);
            }
            let outcomes: Vec<CopyOutcome> = sends.join_all().await;
            drop(permit);
            (plan.index, outcomes)
        });
    }

    let mut acknowledged = vec![false; deliveries];
    let mut attempts_by_status = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, outcomes) = joined.expect("a delivery task panicked");
        for outcome in outcomes {
            acknowledged[index] |= outcome.acknowledged;
            for status in outcome.statuses {
                let key = if status.starts_with("error") {
                    "error".to_owned()
                } else {
                    status
                };
                *attempts_by_status.entry(key).or_insert(0) += 1;
            }
        }
    }

    // Let stalled calls that hyper did not drop finish (bounded), so every
    // effect that will ever be committed is.
    for _ in 0..1_000 {
        if effects.stalls_settled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        effects.stalls_settled(),
        "seed {seed}: stalled inner calls neither finished nor were dropped within 10 s"
    );
    Run {
        seed,
        deliveries,
        acknowledged,
        copies,
        attempts_by_status,
        elapsed: started.elapsed(),
    }
}

fn report(name: &str, run: &Run, effects: &Effects) -> String {
    let mut statuses: Vec<_> = run.attempts_by_status.iter().collect();
    statuses.sort();
    let mut rejections: Vec<_> = effects
        .rejections
        .lock()
        .unwrap()
        .clone()
        .into_iter()
        .collect();
    rejections.sort();
    format!(
        "{name}: seed={} deliveries={} copies={} in {:.2?}; inner calls={}; stalls started={} \
         finished={} dropped={}; attempts by status {statuses:?}; layer rejections {rejections:?}",
        run.seed,
        run.deliveries,
        run.copies,
        run.elapsed,
        effects.calls.load(Ordering::SeqCst),
        effects.stalls_started.load(Ordering::SeqCst),
        effects.stalls_finished.load(Ordering::SeqCst),
        effects.stalls_dropped.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_delivery_was_committed_exactly_once() {
    let effects = Arc::new(Effects::new(Commit::AtTheEnd));
    let replica = start_server(Arc::clone(&effects), |builder| builder).await;
    let run = simulate(Arc::clone(&effects), vec![replica]).await;
    check_exactly_once("commit at the end", &run, &effects);
}

/// The exactly-once assertions of a commit-at-the-end run.
fn check_exactly_once(name: &str, run: &Run, effects: &Effects) {
    let summary = report(name, run, effects);
    let seed = run.seed;

    let raw = effects.raw.lock().unwrap();
    let mut never_acknowledged = 0;
    let mut unacknowledged_but_committed = 0;
    for (index, acknowledged) in run.acknowledged.iter().enumerate() {
        let event_id = format!("evt_{index}");
        let commits = raw.get(&event_id).copied().unwrap_or(0);
        assert!(
            commits <= 1,
            "seed {seed}: {event_id} committed {commits} times\n{summary}"
        );
        if *acknowledged {
            assert_eq!(
                commits, 1,
                "seed {seed}: {event_id} acknowledged without its effect\n{summary}"
            );
        } else {
            never_acknowledged += 1;
            unacknowledged_but_committed += commits;
        }
    }
    assert!(
        raw.keys().all(|id| id
            .strip_prefix("evt_")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < run.deliveries)),
        "seed {seed}: an effect for an event that was never sent\n{summary}"
    );
    let without_effect = run.deliveries - raw.len();
    assert_eq!(
        without_effect,
        never_acknowledged - unacknowledged_but_committed,
        "seed {seed}: deliveries without an effect must be exactly the never-acknowledged ones \
         that did not commit\n{summary}"
    );
    println!(
        "{summary}\nacknowledged {} of {}; never acknowledged (all attempts of all copies failed) {} \
         = {:.2} %, of which committed anyway by a stalled call that finished late {}; \
         without effect {}; committed twice 0",
        run.deliveries - never_acknowledged,
        run.deliveries,
        never_acknowledged,
        100.0 * never_acknowledged as f64 / run.deliveries as f64,
        unacknowledged_but_committed,
        without_effect,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_sink_keeps_exactly_once_when_effects_commit_before_a_stall() {
    let effects = Arc::new(Effects::new(Commit::BeforeTheStall));
    let replica = start_server(Arc::clone(&effects), |builder| builder).await;
    let run = simulate(Arc::clone(&effects), vec![replica]).await;
    let summary = report("commit before the stall", &run, &effects);
    let seed = run.seed;

    let raw = effects.raw.lock().unwrap();
    let sink = effects.sink.lock().unwrap();
    let mut never_acknowledged = 0;
    for (index, acknowledged) in run.acknowledged.iter().enumerate() {
        let event_id = format!("evt_{index}");
        if *acknowledged {
            assert!(
                sink.contains(&event_id),
                "seed {seed}: {event_id} acknowledged but not in the sink\n{summary}"
            );
        } else {
            never_acknowledged += 1;
        }
    }
    assert_eq!(
        sink.len(),
        raw.len(),
        "seed {seed}: the sink and the raw effects disagree on which events happened\n{summary}"
    );
    assert!(
        sink.len() <= run.deliveries,
        "seed {seed}: more sink rows than events\n{summary}"
    );
    let committed_twice = raw.values().filter(|&&n| n > 1).count();
    let extra_commits: usize = raw.values().map(|n| n.saturating_sub(1)).sum();
    println!(
        "{summary}\nsink rows {} for {} deliveries (never acknowledged {}); raw effects committed \
         more than once for {committed_twice} events ({extra_commits} extra commits), all absorbed \
         by the idempotent sink",
        sink.len(),
        run.deliveries,
        never_acknowledged,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_future_after_the_commit_is_processed_again_and_an_idempotent_sink_absorbs_it() {
    let raw_commits = Arc::new(AtomicUsize::new(0));
    let sink = Arc::new(Mutex::new(HashSet::<String>::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (inner_raw, inner_sink, inner_calls) = (
        Arc::clone(&raw_commits),
        Arc::clone(&sink),
        Arc::clone(&calls),
    );
    // The first call commits, then never answers; later calls commit and answer.
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let (raw, sink) = (Arc::clone(&inner_raw), Arc::clone(&inner_sink));
        let first = inner_calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let delivery = request
                .extensions()
                .get::<Delivery>()
                .cloned()
                .expect("a Delivery");
            raw.fetch_add(1, Ordering::SeqCst);
            sink.lock().unwrap().insert(delivery.event_id().to_owned());
            if first {
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let layer = KendoWebhookLayer::new(SECRET).expect("valid secret");
    let body = TestDelivery::example("call.uploaded")
        .event_id("evt_unclosable")
        .created_at("2026-03-05T12:00:00Z")
        .body();
    let signed = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_unclosable")
        .sign(SECRET);
    let request = || signed.request("/").expect("valid request");

    // Kendo's first attempt: the effect is committed, then the client gives
    // up and the request future is dropped before the service answered.
    let first = layer.layer(inner.clone()).oneshot(request());
    let gave_up = tokio::time::timeout(Duration::from_millis(20), first).await;
    assert!(gave_up.is_err(), "the stalled call answered: {gave_up:?}");
    assert_eq!(raw_commits.load(Ordering::SeqCst), 1);

    // Kendo's retry: the layer released the claim (it cannot know the effect
    // happened), so the delivery is processed again.
    let retry = layer
        .layer(inner.clone())
        .oneshot(request())
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        raw_commits.load(Ordering::SeqCst),
        2,
        "the non-idempotent effect happened twice"
    );
    assert_eq!(
        sink.lock().unwrap().len(),
        1,
        "the idempotent sink holds the event once"
    );

    // From now on the delivery is done: a third copy is a duplicate.
    let third = layer
        .layer(inner)
        .oneshot(request())
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(third.headers()["x-kendo-webhook-duplicate"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The same simulation across two replicas (two HTTP servers, two layers)
/// sharing one real `redis-server` through `RedisStore`; each attempt lands
/// on the other replica than the one before. Without `redis-server` on
/// `PATH` it prints SKIPPED and passes, unless `CI` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_commit_every_acknowledged_delivery_exactly_once() {
    use kendo_webhooks_redis::RedisStore;

    let Some(redis) = redis_server::RedisServer::start_or_skip("exactly_once two replicas") else {
        return;
    };
    let effects = Arc::new(Effects::new(Commit::AtTheEnd));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        // A generous store timeout: this test is about duplicates, and a
        // loaded machine must not turn a slow answer into a store error
        // (fail-open would then process without de-duplication, by design).
        let store = RedisStore::builder(redis.url())
            .namespace("exactly_once")
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .expect("connect to the test redis-server");
        replicas
            .push(start_server(Arc::clone(&effects), |builder| builder.dedupe_store(store)).await);
    }
    let run = simulate(Arc::clone(&effects), replicas).await;
    check_exactly_once("two replicas sharing redis", &run, &effects);
}
