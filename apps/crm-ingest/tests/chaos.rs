//! Chaos (issue 9): three `crm-ingest` processes share one real Postgres; a
//! simulated Kendo sends deliveries with Kendo's retry schedule (3
//! attempts, ~1 s then ~2 s apart, 10 s timeout each) to random live
//! replicas (as a load balancer sees them: a killed replica is taken out
//! 500 ms after it died), while a random replica is killed with SIGKILL every 2 s and
//! restarted 1 s later. Every delivery acknowledged with a 2xx must end up
//! in `calls` exactly once; the ones whose three attempts all failed are
//! counted and printed.
//!
//! Size: `CRM_CHAOS_DELIVERIES` (default 300) at `CRM_CHAOS_RATE`
//! deliveries per second (default 50). Full size:
//! `CRM_CHAOS_DELIVERIES=1000 cargo test -p crm-ingest --test chaos -- --nocapture`.
//! SKIPPED without PostgreSQL, a failure under `CI`.

mod common;
use kendo_test_support::postgres_server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{signed, SECRET, TOKEN};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const REPLICAS: usize = 3;
/// Kendo's schedule: the wait before the 2nd and the 3rd attempt.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Kendo's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const KILL_EVERY: Duration = Duration::from_secs(2);
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// How long the simulated load balancer keeps sending to a killed replica
/// before its health check takes it out (so some attempts fail and are
/// retried, as in a real deployment).
const LB_LAG: Duration = Duration::from_millis(500);
/// Longest wait for the replicas to project every acknowledged delivery.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A tiny xorshift generator: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// The replica processes; killed when dropped.
struct Replicas {
    ports: Vec<u16>,
    children: Mutex<Vec<Option<Child>>>,
    live: Vec<AtomicBool>,
    database_url: String,
    log_dir: std::path::PathBuf,
}

impl Replicas {
    fn spawn(&self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("replica-{i}.log")))
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_crm-ingest"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KENDO_WEBHOOK_SECRET", SECRET)
            .env("CRM_ADDR", format!("127.0.0.1:{}", self.ports[i]))
            .env("CRM_DATABASE_URL", &self.database_url)
            .env("CRM_ADMIN_TOKEN", TOKEN)
            .env("CRM_WORKER_LEASE_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start crm-ingest");
        self.children.lock().unwrap()[i] = Some(child);
    }

    /// SIGKILL (`Child::kill` on Unix). The load balancer's view
    /// (`live`) is not changed: see [`LB_LAG`].
    fn kill(&self, i: usize) {
        if let Some(mut child) = self.children.lock().unwrap()[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts replica `i` and waits (bounded) until it answers `/healthz`.
    async fn start(&self, i: usize) {
        for _ in 0..5 {
            self.spawn(i);
            if wait_healthy(self.ports[i]).await {
                self.live[i].store(true, Ordering::SeqCst);
                return;
            }
            // It did not come up (the port not free yet?): try again.
            self.live[i].store(false, Ordering::SeqCst);
            self.kill(i);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "replica {i} does not start; see {}",
            self.log_dir.join(format!("replica-{i}.log")).display()
        );
    }

    fn running(&self) -> Vec<usize> {
        let children = self.children.lock().unwrap();
        (0..REPLICAS).filter(|&i| children[i].is_some()).collect()
    }

    fn live_ports(&self) -> Vec<u16> {
        (0..REPLICAS)
            .filter(|&i| self.live[i].load(Ordering::SeqCst))
            .map(|i| self.ports[i])
            .collect()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in self.children.lock().unwrap().iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_healthy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..200 {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = b"GET /healthz HTTP/1.1\r\nHost: crm\r\nConnection: close\r\n\r\n";
            if stream.write_all(request).await.is_ok() {
                let mut buf = [0u8; 64];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
                {
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        return true;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Acknowledged with a 2xx on this attempt (1-based).
    Acked(u8),
    /// All three attempts failed.
    Failed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_are_in_calls_exactly_once_while_replicas_are_killed() {
    let Some(pg) = postgres_server::PostgresServer::start_or_skip("crm chaos") else {
        return;
    };
    let total = usize::try_from(env_number("CRM_CHAOS_DELIVERIES", 300)).unwrap_or(300);
    let rate = env_number("CRM_CHAOS_RATE", 50).max(1);
    let seed = env_number(
        "CRM_CHAOS_SEED",
        u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
        ) | 1,
    );
    println!("chaos: {total} deliveries at {rate}/s, {REPLICAS} replicas, seed {seed}");

    let log_dir = tempfile::tempdir().expect("a log directory");
    let replicas = Arc::new(Replicas {
        ports: (0..REPLICAS).map(|_| free_port()).collect(),
        children: Mutex::new((0..REPLICAS).map(|_| None).collect()),
        live: (0..REPLICAS).map(|_| AtomicBool::new(false)).collect(),
        database_url: pg.url(),
        log_dir: log_dir.path().to_path_buf(),
    });
    // One first, so the migrations run once; then the others.
    replicas.start(0).await;
    for i in 1..REPLICAS {
        replicas.start(i).await;
    }

    // The killer: every 2 s a random live replica dies; 1 s later it is back.
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (replicas, stop, kills) =
            (Arc::clone(&replicas), Arc::clone(&stop), Arc::clone(&kills));
        tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut restarts = tokio::task::JoinSet::new();
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + KILL_EVERY, KILL_EVERY);
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // A random replica that is running (normally all three:
                // the last victim is back after 1 s).
                let running = replicas.running();
                if running.is_empty() {
                    continue;
                }
                let victim = running[rng.below(running.len())];
                replicas.kill(victim);
                kills.fetch_add(1, Ordering::SeqCst);
                let replicas = Arc::clone(&replicas);
                restarts.spawn(async move {
                    tokio::time::sleep(LB_LAG).await;
                    replicas.live[victim].store(false, Ordering::SeqCst);
                    tokio::time::sleep(RESTART_AFTER - LB_LAG).await;
                    replicas.start(victim).await;
                });
            }
            while let Some(restarted) = restarts.join_next().await {
                restarted.expect("a restart");
            }
        })
    };

    // The simulated Kendo: one task per delivery, started at `rate` per second.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut rng = Rng(seed);
    for n in 0..total {
        let target = started + interval * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(target.into()).await;
        let (client, replicas) = (client.clone(), Arc::clone(&replicas));
        let mut rng = Rng(rng.next() | 1);
        senders.spawn(async move {
            let delivery = signed(
                "call.uploaded",
                &format!("evt_chaos_{n:05}"),
                &format!("dlv_chaos_{n:05}"),
            );
            for attempt in 0..3u8 {
                if attempt > 0 {
                    tokio::time::sleep(BACKOFF[usize::from(attempt) - 1]).await;
                }
                let live = replicas.live_ports();
                let port = if live.is_empty() {
                    replicas.ports[rng.below(REPLICAS)]
                } else {
                    live[rng.below(live.len())]
                };
                let uri = format!("http://127.0.0.1:{port}/webhooks/kendo");
                let request = delivery.request(&uri).expect("a request");
                let exchange = async {
                    let response = client.request(request).await.ok()?;
                    let status = response.status();
                    response.into_body().collect().await.ok()?;
                    Some(status)
                };
                if let Ok(Some(status)) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                    if status.is_success() {
                        return (n, Fate::Acked(attempt + 1));
                    }
                }
            }
            (n, Fate::Failed)
        });
    }
    let mut fates = BTreeMap::new();
    while let Some(done) = senders.join_next().await {
        let (n, fate) = done.expect("a sender task");
        fates.insert(n, fate);
    }
    let sending = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    killer.await.expect("the killer task");
    for i in 0..REPLICAS {
        if !replicas.live[i].load(Ordering::SeqCst) {
            replicas.start(i).await;
        }
    }

    let acked: BTreeSet<String> = fates
        .iter()
        .filter(|(_, fate)| matches!(fate, Fate::Acked(_)))
        .map(|(n, _)| format!("evt_chaos_{n:05}"))
        .collect();
    let failed: Vec<usize> = fates
        .iter()
        .filter(|(_, fate)| **fate == Fate::Failed)
        .map(|(n, _)| *n)
        .collect();
    let by_attempt = |a: u8| fates.values().filter(|f| **f == Fate::Acked(a)).count();

    // Wait (bounded) until the replicas' workers projected every
    // acknowledged delivery, then read `calls` straight from Postgres.
    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to Postgres");
    tokio::spawn(connection);
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let counts = loop {
        let rows = db
            .query(
                "SELECT event_id, call_id, COUNT(*) OVER (PARTITION BY call_id) FROM calls",
                &[],
            )
            .await
            .expect("read calls");
        let counts: BTreeMap<String, (String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    (r.get::<_, String>(1), r.get::<_, i64>(2)),
                )
            })
            .collect();
        if acked.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let doubled: Vec<(&String, &(String, i64))> =
        counts.iter().filter(|(_, (_, n))| *n != 1).collect();
    let failed_but_stored = failed
        .iter()
        .filter(|n| counts.contains_key(&format!("evt_chaos_{n:05}")))
        .count();
    let inbox: Vec<(String, i64)> = db
        .query(
            "SELECT state, COUNT(*) FROM kendo_inbox GROUP BY state ORDER BY state",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default();

    println!(
        "chaos: sent {total} in {sending:?} with {} kills; acknowledged {} (1st attempt {}, 2nd {}, 3rd {}); \
         all three attempts failed: {} ({} of them stored anyway, the answer was lost); \
         rows in calls {}; acknowledged but missing {}; call ids stored more than once {}; inbox {inbox:?}",
        kills.load(Ordering::SeqCst),
        acked.len(),
        by_attempt(1),
        by_attempt(2),
        by_attempt(3),
        failed.len(),
        failed_but_stored,
        counts.len(),
        missing.len(),
        doubled.len(),
    );
    if !failed.is_empty() {
        println!("chaos: deliveries whose three attempts failed: {failed:?}");
    }
    print_logs_if(!missing.is_empty() || !doubled.is_empty(), log_dir.path());
    assert!(
        missing.is_empty(),
        "acknowledged but not in calls: {missing:?}"
    );
    assert!(doubled.is_empty(), "in calls more than once: {doubled:?}");
    assert!(counts.len() <= total);
    assert!(
        acked.len() + failed.len() == total,
        "every delivery has a fate"
    );
}

fn print_logs_if(failed: bool, dir: &Path) {
    if !failed {
        return;
    }
    for i in 0..REPLICAS {
        let path = dir.join(format!("replica-{i}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        println!("--- {} (last lines)", path.display());
        for line in tail.iter().rev() {
            println!("{line}");
        }
    }
}
