//! Run with: `cargo run --release -p kendo-load --bin inbox_load`
//!
//! Durable ingest, measured side by side in one run (see
//! `docs/inbox-benchmarks.md`). Each receiver is axum + `KendoWebhookLayer`
//! on a loopback port, behind one of:
//!
//! - `naive`: one SQLite transaction per delivery (WAL, `synchronous=FULL`,
//!   one connection behind a mutex on the blocking pool), the baseline;
//! - `inbox-sqlite`: the `Inbox` service on SQLite (group commit);
//! - `inbox-postgres`: the `Inbox` service on a PostgreSQL the run starts
//!   itself (`initdb` + `postgres` in a temporary directory, as the tests do).
//!
//! Phase 1, ingest: each receiver, fresh database, at each `--concurrency`
//! (default `16,64`) for `--duration` seconds (default 10) after 1 s of
//! warm-up: deliveries/s answered 2xx, p50/p99 latency. No worker runs.
//! Phase 2, worker: each inbox at the highest concurrency for
//! `--worker-duration` seconds (default 30) with a worker running: ingest
//! rate, worker rate (rows done per second) and the backlog at the end.
//!
//! The load generator (HTTP/1.1 keep-alive connections, pre-signed unique
//! deliveries) runs on its own thread and runtime; the server on a tokio
//! runtime of `--server-threads` (default 2) threads. Other options:
//! `--dir PATH` (where the SQLite files go; default the temp directory),
//! `--only naive,inbox-sqlite,inbox-postgres`. Loopback only, bounded by
//! time. Each result is also printed as a `RESULT key=value ...` line.

use kendo_test_support::postgres_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{post, post_service};
use axum::{Extension, Router};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kendo_webhooks::{
    sign, Delivery, KendoWebhookLayer, TestDelivery, CALL_UPLOADED, DELIVERY_ID_HEADER,
    EVENT_HEADER, SIGNATURE_HEADER,
};
use kendo_webhooks_inbox::Inbox;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "whsec_inbox_load";
const PATH: &str = "/webhooks/kendo";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const WARMUP: Duration = Duration::from_secs(1);

struct Options {
    concurrency: Vec<usize>,
    duration: Duration,
    worker_duration: Duration,
    server_threads: usize,
    dir: PathBuf,
    only: Vec<String>,
    deliveries: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        concurrency: vec![16, 64],
        duration: Duration::from_secs(10),
        worker_duration: Duration::from_secs(30),
        server_threads: 2,
        dir: std::env::temp_dir(),
        only: vec![
            "naive".into(),
            "inbox-sqlite".into(),
            "inbox-postgres".into(),
        ],
        deliveries: 400_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let seconds = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!("{arg} {v}: expected seconds from 0 to 3600"))
        };
        match arg.as_str() {
            "--concurrency" => {
                options.concurrency = value
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|c| (1..=1024).contains(c))
                    })
                    .collect::<Option<_>>()
                    .ok_or(format!(
                        "--concurrency {value}: expected e.g. 16,64 (1 to 1024)"
                    ))?;
            }
            "--duration" => options.duration = seconds(&value)?,
            "--worker-duration" => options.worker_duration = seconds(&value)?,
            "--server-threads" => {
                options.server_threads = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or(format!("--server-threads {value}: expected 1 to 64"))?;
            }
            "--dir" => options.dir = PathBuf::from(value),
            "--only" => options.only = value.split(',').map(str::to_owned).collect(),
            "--deliveries" => {
                options.deliveries = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1000)
                    .ok_or(format!("--deliveries {value}: expected at least 1000"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// One pre-signed delivery.
struct Prepared {
    body: Bytes,
    signature: HeaderValue,
    delivery_id: HeaderValue,
}

fn prepare(count: usize) -> Vec<Prepared> {
    (0..count)
        .map(|i| {
            let body = TestDelivery::example(CALL_UPLOADED)
                .event_id(format!("evt-{i:09}"))
                .created_at("2026-03-05T12:00:00Z")
                .body();
            Prepared {
                signature: HeaderValue::from_str(&sign(SECRET, &body)).expect("hex"),
                delivery_id: HeaderValue::from_str(&format!("dlv-{i:09}")).expect("ascii"),
                body,
            }
        })
        .collect()
}

/// What one run of the generator saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
}

struct Load {
    deliveries: Arc<Vec<Prepared>>,
    next: AtomicUsize,
    addr: SocketAddr,
    measure_from: Instant,
    end: Instant,
}

async fn connection_loop(load: Arc<Load>) -> Tally {
    let mut tally = Tally::default();
    let host = HeaderValue::from_str(&load.addr.to_string()).expect("an address is a header");
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    let mut reconnects = 0;
    while Instant::now() < load.end {
        let mut send = match sender.take() {
            Some(send) => send,
            None => {
                let connected = async {
                    let stream = TcpStream::connect(load.addr).await?;
                    stream.set_nodelay(true)?;
                    let (send, connection) = http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(connection);
                    Ok::<_, BoxError>(send)
                };
                match connected.await {
                    Ok(send) => send,
                    Err(_) if reconnects < 20 => {
                        reconnects += 1;
                        tally.errors += 1;
                        continue;
                    }
                    Err(_) => break,
                }
            }
        };
        let index = load.next.fetch_add(1, Ordering::Relaxed);
        let Some(delivery) = load.deliveries.get(index) else {
            break;
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(PATH)
            .header(HOST, host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(SIGNATURE_HEADER, delivery.signature.clone())
            .header(EVENT_HEADER, HeaderValue::from_static(CALL_UPLOADED))
            .header(DELIVERY_ID_HEADER, delivery.delivery_id.clone())
            .body(Full::new(delivery.body.clone()))
            .expect("a valid request");
        let start = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            send.ready().await?;
            let response = send.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        })
        .await;
        let measured = start >= load.measure_from && Instant::now() <= load.end;
        match answer {
            Ok(Ok(status)) => {
                if measured {
                    let micros = start.elapsed().as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    if status.is_success() {
                        tally.ok += 1;
                    } else {
                        tally.non_2xx += 1;
                    }
                }
                sender = Some(send);
            }
            _ => tally.errors += 1,
        }
    }
    tally
}

/// Drives `addr` with `concurrency` connections for the warm-up plus
/// `duration`, on a thread and runtime of its own.
fn drive(
    deliveries: &Arc<Vec<Prepared>>,
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> Result<(Tally, usize, f64), BoxError> {
    let deliveries = Arc::clone(deliveries);
    std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let start = Instant::now();
                let load = Arc::new(Load {
                    deliveries,
                    next: AtomicUsize::new(0),
                    addr,
                    measure_from: start + WARMUP,
                    end: start + WARMUP + duration,
                });
                let tasks: Vec<_> = (0..concurrency)
                    .map(|_| tokio::spawn(connection_loop(Arc::clone(&load))))
                    .collect();
                let mut total = Tally::default();
                for task in tasks {
                    let tally = task.await?;
                    total.latencies_us.extend(tally.latencies_us);
                    total.ok += tally.ok;
                    total.non_2xx += tally.non_2xx;
                    total.errors += tally.errors;
                }
                let sent = load.next.load(Ordering::Relaxed).min(load.deliveries.len());
                Ok((total, sent, thread_cpu_seconds()))
            })
        })?
        .join()
        .map_err(|_| "the load generator panicked")?
}

/// CPU seconds used by the calling thread (NaN where unavailable).
fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/thread-self/stat"))
}

/// CPU seconds used so far: by the whole process (threads that ended
/// included) and by the SQLite inbox thread. The server's share is the
/// process's minus the SQLite thread's minus the generator's (which the
/// generator measures on its own thread before it ends).
#[derive(Clone, Copy, Default)]
struct Cpu {
    process: f64,
    sqlite: f64,
}

/// User + system seconds from a `/proc/.../stat` file (NaN where unavailable).
fn stat_cpu_seconds(path: &Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 1..)) else {
        return f64::NAN;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // Clock ticks; USER_HZ is 100 on Linux.
    fields.iter().sum::<f64>() / 100.0
}

impl Cpu {
    fn now() -> Self {
        let mut sqlite = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.starts_with("kendo-inbox") {
                    sqlite += stat_cpu_seconds(&task.path().join("stat"));
                }
            }
        }
        Self {
            process: stat_cpu_seconds(Path::new("/proc/self/stat")),
            sqlite,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            process: self.process - before.process,
            sqlite: self.sqlite - before.sqlite,
        }
    }
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// The naive receiver: one SQLite transaction per delivery.
fn naive_router(path: &Path) -> Result<Router, BoxError> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS inbox (event_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL,
             event TEXT NOT NULL, body BLOB NOT NULL, received_ms INTEGER NOT NULL);",
    )?;
    let connection = Arc::new(Mutex::new(connection));
    let handler = move |Extension(delivery): Extension<Delivery>| {
        let connection = Arc::clone(&connection);
        async move {
            let stored = tokio::task::spawn_blocking(move || {
                let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT OR IGNORE INTO inbox VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        delivery.event_id(),
                        delivery.delivery_id(),
                        delivery.event_name(),
                        delivery.body().as_ref(),
                        0,
                    ],
                )?;
                tx.commit()
            })
            .await;
            match stored {
                Ok(Ok(())) => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    Ok(Router::new().route(PATH, post(handler).layer(KendoWebhookLayer::new(SECRET)?)))
}

fn inbox_router(inbox: &Inbox) -> Result<Router, BoxError> {
    Ok(Router::new().route(
        PATH,
        post_service(inbox.clone()).layer(KendoWebhookLayer::new(SECRET)?),
    ))
}

async fn serve(router: Router) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

/// A fresh database for one run of `receiver`.
enum Target {
    Naive(PathBuf),
    Inbox(Inbox),
}

struct Bench {
    options: Options,
    runtime: tokio::runtime::Runtime,
    deliveries: Arc<Vec<Prepared>>,
    postgres: Option<postgres_server::PostgresServer>,
    runs: usize,
}

impl Bench {
    fn target(&mut self, receiver: &str) -> Result<Target, BoxError> {
        self.runs += 1;
        let path = self.options.dir.join(format!(
            "inbox-load-{}-{}-{}.db",
            std::process::id(),
            receiver,
            self.runs
        ));
        match receiver {
            "naive" => Ok(Target::Naive(path)),
            "inbox-sqlite" => Ok(Target::Inbox(
                self.runtime.block_on(Inbox::open_sqlite(&path))?,
            )),
            "inbox-postgres" => {
                let server = self.postgres.as_ref().ok_or("no postgres")?;
                let url = server.url();
                // A fresh table for each run.
                let inbox = self.runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute("DROP TABLE IF EXISTS kendo_inbox; DROP TABLE IF EXISTS kendo_inbox_migrations;")
                        .await?;
                    Ok::<_, BoxError>(Inbox::connect_postgres(&url).await?)
                })?;
                Ok(Target::Inbox(inbox))
            }
            other => Err(format!("unknown receiver {other}").into()),
        }
    }

    fn ingest(&mut self, receiver: &str, concurrency: usize) -> Result<(), BoxError> {
        let target = self.target(receiver)?;
        let router = match &target {
            Target::Naive(path) => naive_router(path)?,
            Target::Inbox(inbox) => inbox_router(inbox)?,
        };
        let (addr, server) = self.runtime.block_on(serve(router))?;
        let cpu_before = Cpu::now();
        let (mut tally, used, generator) =
            drive(&self.deliveries, addr, concurrency, self.options.duration)?;
        let cpu = Cpu::now().since(cpu_before);
        let server_cpu = cpu.process - cpu.sqlite - generator;
        server.abort();
        tally.latencies_us.sort_unstable();
        let seconds = self.options.duration.as_secs_f64();
        let rate = tally.ok as f64 / seconds;
        let (p50, p99) = (
            percentile_ms(&tally.latencies_us, 0.50),
            percentile_ms(&tally.latencies_us, 0.99),
        );
        // CPU per request over warm-up and window together (all requests sent).
        let per_request = |seconds: f64| seconds / used.max(1) as f64 * 1e6;
        println!(
            "{receiver:<15} c={concurrency:<3} {rate:>8.0} deliveries/s   p50 {p50:>6.1} ms   p99 {p99:>6.1} ms   non-2xx {}   errors {}   CPU µs/delivery: server {:.1}, sqlite thread {:.1}, generator {:.1}{}",
            tally.non_2xx,
            tally.errors,
            per_request(server_cpu),
            per_request(cpu.sqlite),
            per_request(generator),
            if used >= self.deliveries.len() { "   (ran out of pre-signed deliveries)" } else { "" }
        );
        println!(
            "RESULT phase=ingest receiver={receiver} concurrency={concurrency} rps={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} non2xx={} errors={} cpu_us_server={:.1} cpu_us_sqlite={:.1} cpu_us_generator={:.1}",
            tally.non_2xx, tally.errors, per_request(server_cpu), per_request(cpu.sqlite), per_request(generator)
        );
        drop(target);
        Ok(())
    }

    fn worker(&mut self, receiver: &str, concurrency: usize) -> Result<(), BoxError> {
        let Target::Inbox(inbox) = self.target(receiver)? else {
            return Err("the worker phase needs an inbox".into());
        };
        let router = inbox_router(&inbox)?;
        let handled = Arc::new(AtomicUsize::new(0));
        let (addr, server, worker) = self.runtime.block_on(async {
            let (addr, server) = serve(router).await?;
            let counter = Arc::clone(&handled);
            // A handler that does a little work: parse-level access, count.
            let worker = inbox
                .worker(move |delivery: Delivery| {
                    let counter = Arc::clone(&counter);
                    async move {
                        std::hint::black_box(delivery.event());
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok::<(), String>(())
                    }
                })
                .batch_size(512)
                .poll_interval(Duration::from_millis(50))
                .spawn();
            Ok::<_, BoxError>((addr, server, worker))
        })?;
        let duration = self.options.worker_duration;
        let before = self.runtime.block_on(inbox.counts())?;
        let (tally, _, _) = drive(&self.deliveries, addr, concurrency, duration)?;
        let after = self.runtime.block_on(inbox.counts())?;
        server.abort();
        self.runtime.block_on(worker.shutdown());
        let total = WARMUP + duration;
        let seconds = duration.as_secs_f64();
        let ingest = tally.ok as f64 / seconds;
        let stored = after.done + after.backlog();
        let done = after.done.saturating_sub(before.done);
        let worker_rate = done as f64 / total.as_secs_f64();
        let ingest_rate_total = stored as f64 / total.as_secs_f64();
        let backlog = after.backlog();
        println!(
            "{receiver:<15} c={concurrency:<3} {}s with a worker: ingest {ingest:.0}/s, worker {worker_rate:.0} done/s (ingest over the same span {ingest_rate_total:.0}/s), backlog at the end {backlog} rows = {:.2} s of ingest",
            total.as_secs(),
            backlog as f64 / ingest_rate_total.max(1.0)
        );
        println!(
            "RESULT phase=worker receiver={receiver} concurrency={concurrency} seconds={} ingest_rps={ingest:.0} worker_rps={worker_rate:.0} stored={stored} done={done} backlog={backlog}",
            total.as_secs()
        );
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    let options = parse_args().map_err(|e| {
        format!(
            "{e}\nusage: inbox_load [--concurrency 16,64] [--duration 10] [--worker-duration 30] \
             [--server-threads 2] [--dir PATH] [--only naive,inbox-sqlite,inbox-postgres] [--deliveries 400000]"
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .worker_threads(options.server_threads)
        .enable_all()
        .build()?;
    let postgres = if options.only.iter().any(|r| r == "inbox-postgres") {
        let server = postgres_server::PostgresServer::start_or_skip("inbox_load");
        if server.is_none() {
            eprintln!("PostgreSQL not installed: the inbox-postgres rows are skipped");
        }
        server
    } else {
        None
    };
    let started = Instant::now();
    let deliveries = Arc::new(prepare(options.deliveries));
    eprintln!(
        "pre-signed {} deliveries in {:.1} s; SQLite files in {}",
        deliveries.len(),
        started.elapsed().as_secs_f64(),
        options.dir.display()
    );
    let receivers: Vec<String> = options
        .only
        .iter()
        .filter(|r| *r != "inbox-postgres" || postgres.is_some())
        .cloned()
        .collect();
    let concurrency = options.concurrency.clone();
    let mut bench = Bench {
        options,
        runtime,
        deliveries,
        postgres,
        runs: 0,
    };
    println!(
        "== ingest ({} s each, fresh database, no worker)",
        bench.options.duration.as_secs_f64()
    );
    for &c in &concurrency {
        for receiver in &receivers {
            bench.ingest(receiver, c)?;
        }
    }
    let highest = concurrency.iter().copied().max().unwrap_or(64);
    if !bench.options.worker_duration.is_zero() {
        println!(
            "== worker keeps up ({} s, c={highest})",
            bench.options.worker_duration.as_secs_f64()
        );
        for receiver in receivers.iter().filter(|r| r.starts_with("inbox-")) {
            bench.worker(receiver, highest)?;
        }
    }
    let dir = bench.options.dir.clone();
    let prefix = format!("inbox-load-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}
