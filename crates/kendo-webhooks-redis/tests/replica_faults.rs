//! Faults across replicas, with real processes, a real `redis-server` and
//! Kendo's real retry schedule (attempts at 0 s, +1 s and +3 s, each with a
//! 10 s timeout). Loopback only; every loop is bounded in count and time.
//!
//! (About 900 lines, one file on purpose: every fault scenario of one child-process harness. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)
//!
//! The receivers killed here are child processes: this test binary started
//! again with `KENDO_FAULT_ROLE=receiver` (axum + `KendoWebhookLayer` +
//! `RedisStore`, see [`child`]), so SIGKILL takes a replica down as an OOM
//! kill or a deploy would: no destructor runs, no claim is given back.
//!
//! Scenarios (each prints `test <name> ... ok`; a name given on the command
//! line runs only the scenarios containing it):
//!
//! - `kill`: replica A is killed inside its handler; Kendo's retries reach
//!   replica B, which waits out A's lapsing lease and processes the delivery
//!   exactly once.
//! - `kill_control`: the same with the previous settings (a 15 s claim, 409
//!   at once): every retry is refused and the delivery is lost. It shows
//!   what the leases and the wait fix, and fails if the fault is not real.
//! - `cancel`: Redis is paused, the client gives up after 0.3 s while the
//!   claim is on the wire, and the retries succeed: the dropped claim was
//!   released, the event is processed exactly once.
//! - `memory`: 150 connections each send most of a 1 MiB body and stall.
//!   The child's RSS grows by no more than the body budget, and a real
//!   delivery still gets through on Kendo's schedule.
//! - `crash_simulation`: three replicas share Redis and an SQLite sink; one
//!   is killed every 2 s and restarted 1 s later while a simulated Kendo
//!   sends deliveries with its retry schedule (`KENDO_CRASH_DELIVERIES`,
//!   default 400, spread over `KENDO_CRASH_SECONDS`, default 12). Every acknowledged delivery
//!   is committed; the only missing ones are those whose three attempts all
//!   failed, counted and printed. The children inherit the environment:
//!   `KENDO_FAULT_LEASE_MS=15000 KENDO_FAULT_WAIT_MS=0` runs it with the
//!   previous settings, for comparison.

use kendo_test_support::redis_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::{Delivery, KendoWebhookLayer, SignedDelivery, TestDelivery};
use kendo_webhooks_redis::RedisStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use redis_server::RedisServer;

const SECRET: &str = "whsec_replica_faults";
const PATH: &str = "/webhooks/kendo";
/// Kendo's per-attempt timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kendo's pauses before its second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
const ROLE: &str = "KENDO_FAULT_ROLE";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() {
    if std::env::var_os(ROLE).is_some() {
        child::run();
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let scenarios: [(&str, fn()); 5] = [
        ("kill", kill),
        ("kill_control", kill_control),
        ("cancel", cancel),
        ("memory", memory),
        ("crash_simulation", crash_simulation),
    ];
    let mut ran = 0;
    for (name, scenario) in scenarios {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        let started = Instant::now();
        scenario();
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        ran += 1;
    }
    println!("\ntest result: ok. {ran} passed");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
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

/// How one attempt ended, as Kendo sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// An answer: status and the layer's rejection reason, if any.
    Answered(u16, Option<String>),
    /// Connection refused or reset, or no answer within the timeout.
    Failed(String),
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        matches!(self, Self::Answered(status, _) if (200..300).contains(status))
    }
}

async fn attempt(
    client: &HttpClient,
    addr: SocketAddr,
    d: &SignedDelivery,
    timeout: Duration,
) -> Attempt {
    let request = d.request(&format!("http://{addr}{PATH}")).expect("request");
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        // The layer's rejection reason, or `duplicate` for its 200 to a
        // delivery it already processed.
        let duplicate = response
            .headers()
            .get("x-kendo-webhook-duplicate")
            .is_some_and(|v| v == "true");
        let reason = response
            .headers()
            .get("x-kendo-webhook-rejection")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| duplicate.then(|| "duplicate".to_owned()));
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok::<_, String>(Attempt::Answered(status, reason))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answered)) => answered,
        Ok(Err(error)) => Attempt::Failed(error),
        Err(_) => Attempt::Failed(format!("no answer within {timeout:?}")),
    }
}

/// A receiver replica in a child process, killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

/// How a child replica's handler behaves.
#[derive(Clone, Copy)]
enum Handler {
    /// Prints `handling <event id>` and never answers.
    Hang,
    /// Commits the effect to the SQLite sink, then answers 200.
    Commit,
    /// Answers 200.
    Ok,
}

impl Replica {
    fn spawn(redis: Option<&RedisServer>, handler: Handler, extra: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .env(ROLE, "receiver")
            .env(
                "KENDO_FAULT_HANDLER",
                match handler {
                    Handler::Hang => "hang",
                    Handler::Commit => "commit",
                    Handler::Ok => "ok",
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(redis) = redis {
            command.env("KENDO_FAULT_REDIS", redis.url());
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start a child replica");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the child replica starts and prints its address");
        let addr = first
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the child: {first:?}"));
        Self { child, addr, lines }
    }

    /// Waits (bounded) for a line from the child starting with `prefix`.
    fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the child never printed {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process replica B: axum + the layer + `RedisStore`, counting the
/// deliveries its handler saw.
async fn in_process_replica(
    store: RedisStore,
    in_flight_wait: Duration,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = KendoWebhookLayer::builder()
        .secret(SECRET)
        .dedupe_store(store)
        .in_flight_wait(in_flight_wait)
        .build()
        .expect("layer");
    async fn count(
        State(calls): State<Arc<AtomicUsize>>,
        _: axum::Extension<Delivery>,
    ) -> StatusCode {
        calls.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    }
    let router = Router::new()
        .route(PATH, post(count).layer(layer))
        .with_state(Arc::clone(&calls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    (addr, calls)
}

/// Replica A hangs in its handler and is killed; Kendo's schedule continues
/// on replica B. Returns B's handler calls and every attempt's outcome.
fn kill_scenario(
    redis: &RedisServer,
    lease: Duration,
    in_flight_wait: Duration,
    a_env: &[(&str, String)],
) -> (usize, Vec<(Attempt, Duration)>) {
    let rt = runtime();
    rt.block_on(async {
        let b_store = redis_store(redis, lease).await;
        let (b, b_calls) = in_process_replica(b_store, in_flight_wait).await;
        let mut a = Replica::spawn(Some(redis), Handler::Hang, a_env);
        let client = client();
        let d = delivery(1);
        let first = tokio::spawn({
            let (client, d, addr) = (client.clone(), d.clone(), a.addr);
            async move { attempt(&client, addr, &d, ATTEMPT_TIMEOUT).await }
        });
        let handling = tokio::task::block_in_place(|| a.expect_line("handling "));
        assert_eq!(handling, "handling evt_1");
        a.kill();
        let first = first.await.expect("first attempt");
        assert!(!first.acknowledged(), "A was killed: {first:?}");
        let mut attempts = vec![(first, Duration::ZERO)];
        for pause in BACKOFF {
            tokio::time::sleep(pause).await;
            let started = Instant::now();
            let outcome = attempt(&client, b, &d, ATTEMPT_TIMEOUT).await;
            let done = outcome.acknowledged();
            attempts.push((outcome, started.elapsed()));
            if done {
                break;
            }
        }
        // A later copy is a duplicate either way.
        let again = attempt(&client, b, &d, ATTEMPT_TIMEOUT).await;
        if b_calls.load(Ordering::SeqCst) == 1 {
            assert_eq!(again, Attempt::Answered(200, Some("duplicate".to_owned())));
        }
        (b_calls.load(Ordering::SeqCst), attempts)
    })
}

fn start_redis(test: &str) -> Option<RedisServer> {
    let redis = RedisServer::start_or_skip(test);
    if redis.is_none() {
        println!("SKIPPED: {test} needs redis-server");
    }
    redis
}

async fn redis_store(redis: &RedisServer, lease: Duration) -> RedisStore {
    RedisStore::builder(redis.url())
        .namespace("faults")
        .lease(lease)
        .build()
        .await
        .expect("connect to redis")
}

fn kill() {
    let Some(redis) = start_redis("replica_faults_kill") else {
        return;
    };
    let (calls, attempts) = kill_scenario(
        &redis,
        RedisStore::DEFAULT_LEASE,
        kendo_webhooks::DEFAULT_IN_FLIGHT_WAIT,
        &[],
    );
    println!("  attempts (outcome, latency): {attempts:?}");
    assert_eq!(calls, 1, "processed exactly once on B: {attempts:?}");
    let (last, latency) = attempts.last().expect("attempts");
    assert!(last.acknowledged(), "{attempts:?}");
    assert_eq!(
        attempts.len(),
        2,
        "the first retry is processed: {attempts:?}"
    );
    assert!(*latency < ATTEMPT_TIMEOUT, "{attempts:?}");
}

fn kill_control() {
    let Some(redis) = start_redis("replica_faults_kill_control") else {
        return;
    };
    let previous = Duration::from_secs(15);
    let env = [("KENDO_FAULT_LEASE_MS", previous.as_millis().to_string())];
    let (calls, attempts) = kill_scenario(&redis, previous, Duration::ZERO, &env);
    println!("  attempts with a 15 s claim and no wait: {attempts:?}");
    assert_eq!(calls, 0, "{attempts:?}");
    assert_eq!(attempts.len(), 3);
    for (outcome, _) in &attempts[1..] {
        assert_eq!(
            *outcome,
            Attempt::Answered(409, Some("in_flight".to_owned()))
        );
    }
}

fn cancel() {
    let Some(redis) = start_redis("replica_faults_cancel") else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        // The store waits out the pause: only the client's cancellation
        // can end the first attempt.
        let store = RedisStore::builder(redis.url())
            .namespace("cancel")
            .timeout(Duration::from_secs(3))
            .build()
            .await
            .expect("connect");
        let (addr, calls) = in_process_replica(store, kendo_webhooks::DEFAULT_IN_FLIGHT_WAIT).await;
        let client = client();
        let d = delivery(2);
        redis
            .command(&["CLIENT", "PAUSE", "800", "ALL"])
            .expect("pause redis");
        let first = attempt(&client, addr, &d, Duration::from_millis(300)).await;
        assert!(matches!(first, Attempt::Failed(_)), "{first:?}");
        let mut attempts = vec![first];
        for pause in BACKOFF {
            tokio::time::sleep(pause).await;
            let outcome = attempt(&client, addr, &d, ATTEMPT_TIMEOUT).await;
            let done = outcome.acknowledged();
            attempts.push(outcome);
            if done {
                break;
            }
        }
        println!("  attempts: {attempts:?}");
        assert!(
            attempts.last().is_some_and(Attempt::acknowledged),
            "{attempts:?}"
        );
        assert_eq!(
            attempts.len(),
            2,
            "the first retry is processed: {attempts:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let again = attempt(&client, addr, &d, ATTEMPT_TIMEOUT).await;
        assert_eq!(again, Attempt::Answered(200, Some("duplicate".to_owned())));
    });
}

/// The child's resident set, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// Opens `count` connections that each send a request declaring a body of
/// `declared` bytes, send `send` bytes of it and stall. Returns the
/// connections still stalled and how many were answered 503
/// `body_budget_exhausted` (read within a bounded time).
async fn stall_bodies(
    addr: SocketAddr,
    first_id: usize,
    count: usize,
    declared: usize,
    send: usize,
) -> (Vec<tokio::net::TcpStream>, usize) {
    let mut attackers = Vec::new();
    for n in first_id..first_id + count {
        attackers.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let head = format!(
                "POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 content-length: {declared}\r\nx-kendo-signature: {sig}\r\n\
                 x-kendo-delivery-id: attack_{n}\r\nx-kendo-event: call.uploaded\r\n\r\n",
                sig = "0".repeat(64)
            );
            stream.write_all(head.as_bytes()).await.ok()?;
            let body = vec![b' '; send];
            let _ = stream.write_all(&body).await;
            // Refused ones are answered at once; stalled ones say nothing.
            let mut answer = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await;
            let refused = matches!(read, Ok(Ok(n)) if answer[..n].starts_with(b"HTTP/1.1 503"));
            Some((stream, refused))
        }));
    }
    let (mut stalled, mut refused) = (Vec::new(), 0);
    for attacker in attackers {
        match tokio::time::timeout(Duration::from_secs(30), attacker).await {
            Ok(Ok(Some((_, true)))) => refused += 1,
            Ok(Ok(Some((stream, false)))) => stalled.push(stream),
            _ => {}
        }
    }
    (stalled, refused)
}

/// Sends a real delivery on Kendo's schedule; the outcome of every attempt.
async fn kendo_schedule(client: &HttpClient, addr: SocketAddr, d: &SignedDelivery) -> Vec<Attempt> {
    let mut attempts = vec![attempt(client, addr, d, ATTEMPT_TIMEOUT).await];
    for pause in BACKOFF {
        if attempts.last().is_some_and(Attempt::acknowledged) {
            break;
        }
        tokio::time::sleep(pause).await;
        attempts.push(attempt(client, addr, d, ATTEMPT_TIMEOUT).await);
    }
    attempts
}

fn memory() {
    // The defaults: a 64 KiB body limit and a 16 MiB budget, of which
    // bodies over 16 KiB may fill seven eighths.
    const LIMIT: usize = kendo_webhooks::DEFAULT_BODY_LIMIT;
    const BUDGET: usize = kendo_webhooks::DEFAULT_BODY_BUDGET;
    const ATTACKERS: usize = 150;
    let nearly_full = LIMIT - 1024;
    let rt = runtime();
    let replica = Replica::spawn(None, Handler::Ok, &[]);
    rt.block_on(async {
        let client = client();
        let warm = attempt(&client, replica.addr, &delivery(3), ATTEMPT_TIMEOUT).await;
        assert!(warm.acknowledged(), "{warm:?}");
        let before = rss(replica.pid());

        // 150 stalled maximum-size bodies: all fit in the budget.
        let (mut stalled, refused) =
            stall_bodies(replica.addr, 0, ATTACKERS, LIMIT, nearly_full).await;
        let during = rss(replica.pid());
        let growth = during.saturating_sub(before);
        println!(
            "  {ATTACKERS} stalled bodies of {nearly_full} B: RSS {} -> {} KiB (+{} KiB, budget {} \
             KiB); {} stalled, {refused} refused",
            before / 1024,
            during / 1024,
            growth / 1024,
            BUDGET / 1024,
            stalled.len()
        );
        assert_eq!((stalled.len(), refused), (ATTACKERS, 0));
        assert!(
            growth <= BUDGET,
            "grew by {growth} bytes, over the {BUDGET}-byte budget"
        );
        let d = delivery(4);
        let attempts = kendo_schedule(&client, replica.addr, &d).await;
        println!("  a real delivery meanwhile: {attempts:?}");
        assert!(
            matches!(attempts.as_slice(), [only] if only.acknowledged()),
            "{attempts:?}"
        );

        // 150 more: past seven eighths of the budget, bodies are refused
        // at once with 503, and a real (small) delivery still gets through.
        let (more, refused) =
            stall_bodies(replica.addr, ATTACKERS, ATTACKERS, LIMIT, nearly_full).await;
        stalled.extend(more);
        // The budget is charged for the bytes received: what fits is the
        // large bodies' seven eighths over the bytes each sent (a body is
        // refused when a frame takes it past the budget, so a few fewer
        // may be held), and never more than the declared lengths allow.
        let fit = (BUDGET - BUDGET / 8) / nearly_full;
        let at_least = (BUDGET - BUDGET / 8) / LIMIT;
        let after = rss(replica.pid());
        println!(
            "  {} stalled bodies in all: {} held, {refused} refused with 503 (room for {at_least} to {fit}); \
             RSS +{} KiB",
            2 * ATTACKERS,
            stalled.len(),
            after.saturating_sub(before) / 1024
        );
        assert!(
            (at_least..=fit).contains(&stalled.len()),
            "what fits in the budget is held: {} of {at_least}..={fit}",
            stalled.len()
        );
        assert_eq!(refused, 2 * ATTACKERS - stalled.len());
        let d = delivery(5);
        let attempts = kendo_schedule(&client, replica.addr, &d).await;
        println!("  a real delivery meanwhile: {attempts:?}");
        assert!(
            matches!(attempts.as_slice(), [only] if only.acknowledged()),
            "{attempts:?}"
        );
        drop(stalled);
    });
}

fn crash_simulation() {
    const REPLICAS: usize = 3;
    const CONCURRENCY: usize = 16;
    let deliveries: usize = std::env::var("KENDO_CRASH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seconds: u64 = std::env::var("KENDO_CRASH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    // Deliveries start evenly spread over the run, as real traffic would.
    let spacing = Duration::from_secs(seconds) / u32::try_from(deliveries).unwrap_or(u32::MAX);
    let seed: u64 = std::env::var("KENDO_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let Some(redis) = start_redis("replica_faults_crash_simulation") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = dir.path().join("sink.sqlite3");
    child::open_sink(&sink).expect("create the sink");
    let env = [("KENDO_FAULT_SINK", sink.display().to_string())];
    let spawn = || Replica::spawn(Some(&redis), Handler::Commit, &env);
    let replicas: Arc<Mutex<Vec<Option<Replica>>>> =
        Arc::new(Mutex::new((0..REPLICAS).map(|_| Some(spawn())).collect()));
    let live = |replicas: &Mutex<Vec<Option<Replica>>>| -> Vec<SocketAddr> {
        replicas
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|r| r.addr)
            .collect()
    };
    let rt = runtime();
    let (acked, failed, kills, retried) = rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let retried = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Vec::new();
        for worker in 0..CONCURRENCY {
            let retried = Arc::clone(&retried);
            let (next, acked, failed, replicas) = (
                next.clone(),
                acked.clone(),
                failed.clone(),
                replicas.clone(),
            );
            senders.push(tokio::spawn(async move {
                let client = client();
                let mut rng = StdRng::seed_from_u64(seed ^ worker as u64);
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= deliveries {
                        break;
                    }
                    let due = started + spacing * u32::try_from(n).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(due.into()).await;
                    let d = delivery(1_000 + n);
                    let mut outcomes = Vec::new();
                    for try_no in 0..3 {
                        if try_no > 0 {
                            tokio::time::sleep(BACKOFF[try_no - 1]).await;
                        }
                        let addrs = live(&replicas);
                        if addrs.is_empty() {
                            outcomes.push(Attempt::Failed("no replica up".into()));
                            continue;
                        }
                        let addr = addrs[rng.random_range(0..addrs.len())];
                        let outcome = attempt(&client, addr, &d, ATTEMPT_TIMEOUT).await;
                        let done = outcome.acknowledged();
                        outcomes.push(outcome);
                        if done {
                            break;
                        }
                    }
                    if outcomes.len() > 1 {
                        retried.fetch_add(1, Ordering::SeqCst);
                    }
                    if outcomes.last().is_some_and(Attempt::acknowledged) {
                        acked.lock().unwrap().push(format!("evt_{}", 1_000 + n));
                    } else {
                        failed
                            .lock()
                            .unwrap()
                            .push((format!("evt_{}", 1_000 + n), outcomes));
                    }
                }
            }));
        }
        // Chaos: every 2 s kill a random replica, restart it 1 s later.
        let mut rng = StdRng::seed_from_u64(seed);
        let mut kills = 0;
        while !senders.iter().all(|s| s.is_finished()) && kills < 60 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let victim = rng.random_range(0..REPLICAS);
            if let Some(mut replica) = replicas.lock().unwrap()[victim].take() {
                replica.kill();
                kills += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let fresh = tokio::task::block_in_place(spawn);
            replicas.lock().unwrap()[victim] = Some(fresh);
        }
        for sender in senders {
            sender.await.expect("sender");
        }
        let acked = acked.lock().unwrap().clone();
        let failed = failed.lock().unwrap().clone();
        (acked, failed, kills, retried.load(Ordering::SeqCst))
    });
    drop(replicas);
    let (effects, commits) = child::read_sink(&sink).expect("read the sink");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !effects.contains_key(*id))
        .collect();
    let doubles = commits.values().filter(|&&n| n > 1).count();
    println!(
        "  {deliveries} deliveries, {kills} replicas killed, {retried} deliveries retried: {} acknowledged, {} not (all three \
         attempts failed: {:?}), {} committed; {} deliveries committed twice by the handler \
         (a replica killed after its commit, before its answer), absorbed by the sink",
        acked.len(),
        failed.len(),
        failed.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        effects.len(),
        doubles
    );
    assert!(kills >= 2, "the run was too short to kill anything");
    assert!(
        missing.is_empty(),
        "acknowledged but never committed: {missing:?}"
    );
    assert!(
        effects.values().all(|&n| n == 1),
        "the sink holds each event once"
    );
    assert_eq!(acked.len() + failed.len(), deliveries);
    for (id, outcomes) in &failed {
        assert!(
            !outcomes.iter().any(Attempt::acknowledged),
            "{id}: {outcomes:?}"
        );
    }
}

/// The child replica: a real receiver process.
mod child {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Extension, Router};
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use kendo_webhooks::{Delivery, KendoWebhookLayer};
    use kendo_webhooks_redis::RedisStore;

    use super::{PATH, SECRET};

    pub(super) fn open_sink(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
        let connection = rusqlite::Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS effects (event_id TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS commits (event_id TEXT NOT NULL);",
        )?;
        Ok(connection)
    }

    /// Event id → rows in `effects` (at most 1) and → handler commits.
    #[allow(clippy::type_complexity)]
    pub(super) fn read_sink(
        path: &Path,
    ) -> rusqlite::Result<(HashMap<String, usize>, HashMap<String, usize>)> {
        let connection = open_sink(path)?;
        let count = |sql: &str| -> rusqlite::Result<HashMap<String, usize>> {
            let mut statement = connection.prepare(sql)?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        };
        Ok((
            count("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id")?,
            count("SELECT event_id, COUNT(*) FROM commits GROUP BY event_id")?,
        ))
    }

    pub(super) fn run() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(serve());
    }

    async fn serve() {
        let env = |name: &str| std::env::var(name).ok();
        let mut builder = KendoWebhookLayer::builder().secret(SECRET);
        if let Some(url) = env("KENDO_FAULT_REDIS") {
            let lease = env("KENDO_FAULT_LEASE_MS")
                .and_then(|ms| ms.parse().ok())
                .map_or(RedisStore::DEFAULT_LEASE, Duration::from_millis);
            let store = RedisStore::builder(url)
                .namespace("faults")
                .lease(lease)
                .build()
                .await
                .expect("child connects to redis");
            builder = builder.dedupe_store(store);
        }
        if let Some(limit) = env("KENDO_FAULT_BODY_LIMIT").and_then(|l| l.parse().ok()) {
            builder = builder.body_limit(limit);
        }
        if let Some(budget) = env("KENDO_FAULT_BODY_BUDGET").and_then(|l| l.parse().ok()) {
            builder = builder.body_budget(budget);
        }
        if let Some(ms) = env("KENDO_FAULT_WAIT_MS").and_then(|ms| ms.parse().ok()) {
            builder = builder.in_flight_wait(Duration::from_millis(ms));
        }
        let layer = builder.build().expect("layer");
        let handler = env("KENDO_FAULT_HANDLER").unwrap_or_default();
        let sink = env("KENDO_FAULT_SINK");
        let router = Router::new().route(
            PATH,
            post(move |Extension(delivery): Extension<Delivery>| {
                let (handler, sink) = (handler.clone(), sink.clone());
                async move { handle(&handler, sink, delivery).await }
            })
            .layer(layer),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        say(&format!("listening {addr}"));
        // hyper keeps a read buffer per connection that grows up to
        // `max_buf_size` (about 400 KiB by default) on top of the layer's
        // budget; a server facing the internet bounds it.
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn say(line: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    async fn handle(handler: &str, sink: Option<String>, delivery: Delivery) -> StatusCode {
        match handler {
            "hang" => {
                say(&format!("handling {}", delivery.event_id()));
                std::future::pending().await
            }
            "commit" => {
                let sink = sink.expect("KENDO_FAULT_SINK");
                let id = delivery.event_id().to_owned();
                // Some work before the commit, so kills find requests in flight.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let committed = tokio::task::spawn_blocking(move || {
                    let mut connection = open_sink(Path::new(&sink))?;
                    let transaction = connection.transaction()?;
                    transaction.execute("INSERT INTO commits (event_id) VALUES (?1)", [&id])?;
                    transaction.execute(
                        "INSERT OR IGNORE INTO effects (event_id) VALUES (?1)",
                        [&id],
                    )?;
                    transaction.commit()
                })
                .await;
                match committed {
                    Ok(Ok(())) => StatusCode::OK,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
            _ => StatusCode::OK,
        }
    }
}
