//! Run with: `cargo run --release -p kendo-load --bin load -- --url http://127.0.0.1:PORT`
//!
//! A webhook-aware load generator for the `load_server` example (see
//! `BENCHMARKS.md`). Generic tools cannot do this: every request must carry
//! a unique delivery id and a valid signature. It:
//!
//! 1. pre-signs `--deliveries` `call.uploaded` deliveries (~330 B bodies) with
//!    unique delivery and event ids, so no signing happens during the run;
//! 2. opens `--concurrency` HTTP/1.1 keep-alive connections (hyper 1) and
//!    drives the server for `--warmup` then `--duration` seconds, each
//!    connection sending its next delivery as soon as the previous answer
//!    arrived; with `--dup-ratio R`, a share R of requests resends one of
//!    the last `--resend-window` (20,000) deliveries sent (a Kendo retry)
//!    instead of a new one. Keep the window within the server's de-dup
//!    capacity: the LRU forgets older ids by design, and a resend of a
//!    forgotten id is processed again (the check below then fails);
//! 3. prints requests/s, p50/p99/max latency and status counts over the
//!    measured window, and the server's CPU time per request;
//! 4. asks the sink (`GET /stats`) which deliveries it processed and checks
//!    that every delivery answered 2xx was processed exactly once and none
//!    more than once (it exits with status 1 otherwise).
//!
//! With `--scheme svix`, deliveries are signed as svix signs them
//! (`svix-id`, `svix-timestamp`, `svix-signature`, by svix's own
//! `Webhook::sign` with the same secret's bytes as key) for the
//! `load_server svix` peer; `X-Kendo-Event` is sent in both schemes.
//!
//! Loopback only; everything is bounded by count and time. The last line is
//! a machine-readable `RESULT key=value ...` summary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kendo_webhooks::{
    sign, TestDelivery, CALL_UPLOADED, DELIVERY_ID_HEADER, DUPLICATE_HEADER, EVENT_HEADER,
    REJECTION_HEADER, SIGNATURE_HEADER,
};
use tokio::net::TcpStream;

const DEFAULT_SECRET: &str = "whsec_load_test";
const PATH: &str = "/webhooks/kendo";
/// A request not answered within this is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnections allowed per connection slot before it gives up.
const MAX_RECONNECTS: u32 = 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    deliveries: usize,
    dup_ratio: f64,
    resend_window: usize,
    secret: String,
    label: String,
    svix: bool,
}

/// One pre-signed delivery.
struct Prepared {
    body: Bytes,
    signature: HeaderValue,
    delivery_id: HeaderValue,
    /// `svix-timestamp`, in the svix scheme.
    timestamp: Option<HeaderValue>,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latencies in ns of requests that finished inside the measured window.
    latencies: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    /// `x-kendo-webhook-rejection` values seen in the window (e.g.
    /// `in_flight`), and `duplicate` for `x-kendo-webhook-duplicate: true`.
    rejections: BTreeMap<String, u64>,
    errors: u64,
    /// Indices of deliveries answered 2xx at least once (any time).
    acknowledged: Vec<u32>,
    /// Requests sent in the measured window (answered or not).
    measured: u64,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        concurrency: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        deliveries: 1_500_000,
        dup_ratio: 0.0,
        resend_window: 20_000,
        secret: std::env::var("KENDO_WEBHOOK_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.into()),
        label: "run".into(),
        svix: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = |max: f64| {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0 && *n <= max)
                .ok_or(format!("{arg} {value}: expected a number from 0 to {max}"))
        };
        match arg.as_str() {
            "--url" => {
                let rest = value
                    .strip_prefix("http://")
                    .ok_or(format!("--url {value}: expected http://127.0.0.1:PORT"))?;
                let host = rest.split('/').next().unwrap_or(rest);
                options.addr = host
                    .parse()
                    .map_err(|e| format!("--url {value}: {e} (expected http://127.0.0.1:PORT)"))?;
            }
            "--concurrency" => options.concurrency = number(10_000.0)?.max(1.0) as usize,
            "--duration" => options.duration = Duration::from_secs_f64(number(600.0)?),
            "--warmup" => options.warmup = Duration::from_secs_f64(number(60.0)?),
            "--deliveries" => options.deliveries = number(u32::MAX as f64)?.max(1.0) as usize,
            "--dup-ratio" => options.dup_ratio = number(0.9)?,
            "--resend-window" => {
                options.resend_window = number(u32::MAX as f64)?.max(1.0) as usize;
            }
            "--secret" => options.secret = value,
            "--label" => options.label = value,
            "--scheme" => match value.as_str() {
                "kendo" => options.svix = false,
                "svix" => options.svix = true,
                _ => return Err(format!("--scheme {value}: expected kendo or svix")),
            },
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !options.addr.ip().is_loopback() {
        return Err(format!(
            "{}: only loopback targets are allowed",
            options.addr
        ));
    }
    Ok(options)
}

fn prepare(options: &Options) -> Vec<Prepared> {
    // A run id keeps deliveries of two runs against one server apart.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let run = now.as_micros() % 1_000_000_000;
    // svix refuses timestamps more than 5 minutes away; runs are shorter.
    let timestamp = i64::try_from(now.as_secs()).unwrap_or_default();
    let svix = svix::webhooks::Webhook::from_bytes(options.secret.as_bytes().to_vec())
        .expect("a non-empty secret");
    (0..options.deliveries)
        .map(|i| {
            let body = TestDelivery::example(CALL_UPLOADED)
                .event_id(format!("evt-{run}-{i}"))
                .created_at("2026-03-05T12:00:00Z")
                .body();
            let delivery_id = format!("dlv-{run}-{i:09}");
            let (signature, timestamp) = if options.svix {
                let signature = svix
                    .sign(&delivery_id, timestamp, &body)
                    .expect("a UTF-8 body");
                (signature, Some(HeaderValue::from(timestamp)))
            } else {
                (sign(&options.secret, &body), None)
            };
            Prepared {
                signature: HeaderValue::from_str(&signature).expect("a valid header"),
                delivery_id: HeaderValue::from_str(&delivery_id).expect("ASCII is a valid header"),
                timestamp,
                body,
            }
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A tiny xorshift: which requests are resends, and of what.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    deliveries: Vec<Prepared>,
    next: AtomicUsize,
    host: HeaderValue,
    options: Options,
    measure_from: Instant,
    end: Instant,
}

async fn connection_loop(shared: Arc<Shared>, slot: u64) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (slot + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let mut sender = None;
    let mut reconnects = 0;
    while Instant::now() < shared.end {
        let mut send = match sender.take() {
            Some(send) => send,
            None => match connect(shared.options.addr).await {
                Ok(send) => send,
                Err(error) => {
                    tally.errors += 1;
                    reconnects += 1;
                    if reconnects > MAX_RECONNECTS {
                        eprintln!("connection {slot}: giving up after {MAX_RECONNECTS} reconnects: {error}");
                        break;
                    }
                    continue;
                }
            },
        };
        let sent_so_far = shared
            .next
            .load(Ordering::Relaxed)
            .min(shared.deliveries.len());
        let index = if sent_so_far > 0 && rng.unit() < shared.options.dup_ratio {
            // Kendo retries within seconds: resend one of the last
            // `resend_window` deliveries sent.
            let window = sent_so_far.min(shared.options.resend_window);
            sent_so_far - 1 - (rng.next() % window as u64) as usize
        } else {
            let index = shared.next.fetch_add(1, Ordering::Relaxed);
            if index >= shared.deliveries.len() {
                break;
            }
            index
        };
        let delivery = &shared.deliveries[index];
        let request = Request::builder()
            .method(Method::POST)
            .uri(PATH)
            .header(HOST, shared.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(EVENT_HEADER, HeaderValue::from_static(CALL_UPLOADED));
        let request = match &delivery.timestamp {
            None => request
                .header(SIGNATURE_HEADER, delivery.signature.clone())
                .header(DELIVERY_ID_HEADER, delivery.delivery_id.clone()),
            Some(timestamp) => request
                .header("svix-signature", delivery.signature.clone())
                .header("svix-id", delivery.delivery_id.clone())
                .header("svix-timestamp", timestamp.clone()),
        };
        let request = request
            .body(Full::new(delivery.body.clone()))
            .expect("a valid request");
        let start = Instant::now();
        let measured = start >= shared.measure_from;
        if measured {
            tally.measured += 1;
        }
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            send.ready().await?;
            let response = send.send_request(request).await?;
            let status = response.status();
            let duplicate = response
                .headers()
                .get(DUPLICATE_HEADER)
                .is_some_and(|value| value == "true");
            let rejection = response
                .headers()
                .get(REJECTION_HEADER)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .or_else(|| duplicate.then(|| "duplicate".to_owned()));
            response.into_body().collect().await?;
            Ok::<_, BoxError>((status, rejection))
        })
        .await;
        match answer {
            Ok(Ok((status, rejection))) => {
                if measured {
                    tally.latencies.push(start.elapsed().as_nanos() as u64);
                    *tally.statuses.entry(status.as_u16()).or_default() += 1;
                    if let Some(reason) = rejection {
                        *tally.rejections.entry(reason).or_default() += 1;
                    }
                }
                if status.is_success() {
                    tally.acknowledged.push(index as u32);
                }
                sender = Some(send);
            }
            Ok(Err(_)) | Err(_) => {
                // The connection is in an unknown state: open a new one.
                tally.errors += 1;
            }
        }
    }
    tally
}

async fn get_stats(addr: SocketAddr, host: &HeaderValue) -> Result<serde_json::Value, BoxError> {
    get_json(addr, host, "/stats").await
}

async fn get_json(
    addr: SocketAddr,
    host: &HeaderValue,
    path: &str,
) -> Result<serde_json::Value, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(path)
        .header(HOST, host.clone())
        .body(Empty::new())?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, send.send_request(request)).await??;
    if !response.status().is_success() {
        return Err(format!("GET {path} answered {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// User + system CPU seconds of this process, from `/proc/self/stat`
/// (NaN where unavailable).
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return f64::NAN;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        // Clock ticks; USER_HZ is 100 on Linux.
        [utime, stime] => (utime + stime) / 100.0,
        _ => f64::NAN,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1_000.0
}

fn main() -> Result<(), BoxError> {
    let options = parse_args().map_err(|e| {
        format!(
            "{e}\nusage: load --url http://127.0.0.1:PORT [--concurrency 64] [--duration 10] \
             [--warmup 1] [--deliveries 1500000] [--dup-ratio 0] [--resend-window 20000] [--secret S] [--label NAME] [--scheme kendo|svix]"
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let prepare_start = Instant::now();
    let deliveries = prepare(&options);
    eprintln!(
        "{}: pre-signed {} deliveries ({} B bodies) in {:.1} s",
        options.label,
        deliveries.len(),
        deliveries[0].body.len(),
        prepare_start.elapsed().as_secs_f64()
    );
    let host = HeaderValue::from_str(&options.addr.to_string())?;
    runtime.block_on(async move {
        let before = get_stats(options.addr, &host).await.map_err(|e| {
            format!(
                "cannot reach {} (is load_server running?): {e}",
                options.addr
            )
        })?;
        let start = Instant::now();
        let measure_from = start + options.warmup;
        let end = measure_from + options.duration;
        let shared = Arc::new(Shared {
            deliveries,
            next: AtomicUsize::new(0),
            host: host.clone(),
            options,
            measure_from,
            end,
        });
        // Server CPU time at the start of the measured window.
        let stats_host = host.clone();
        let addr = shared.options.addr;
        let cpu_at_start = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let own = own_cpu_seconds();
            get_json(addr, &stats_host, "/cpu")
                .await
                .map(|server| (server, own))
        });
        let tasks: Vec<_> = (0..shared.options.concurrency as u64)
            .map(|slot| tokio::spawn(connection_loop(Arc::clone(&shared), slot)))
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            let tally = task.await?;
            total.latencies.extend(tally.latencies);
            for (status, count) in tally.statuses {
                *total.statuses.entry(status).or_default() += count;
            }
            for (reason, count) in tally.rejections {
                *total.rejections.entry(reason).or_default() += count;
            }
            total.errors += tally.errors;
            total.measured += tally.measured;
            total.acknowledged.extend(tally.acknowledged);
        }
        let finished = Instant::now();
        let own_at_end = own_cpu_seconds();
        let window = finished
            .saturating_duration_since(measure_from)
            .as_secs_f64();
        let (at_start, own_at_start) = cpu_at_start.await??;
        let after = get_stats(addr, &host).await?;
        let generator_cpu = own_at_end - own_at_start;
        report(
            &shared,
            total,
            window,
            generator_cpu,
            &before,
            &at_start,
            &after,
        )
    })
}

fn report(
    shared: &Shared,
    mut total: Tally,
    window: f64,
    generator_cpu: f64,
    before: &serde_json::Value,
    at_start: &serde_json::Value,
    after: &serde_json::Value,
) -> Result<(), BoxError> {
    let options = &shared.options;
    total.latencies.sort_unstable();
    let answered = total.latencies.len() as f64;
    let rps = answered / window;
    let (p50, p99, max) = (
        percentile(&total.latencies, 0.50),
        percentile(&total.latencies, 0.99),
        total
            .latencies
            .last()
            .map_or(f64::NAN, |&ns| ns as f64 / 1_000.0),
    );
    // Exactly once: the set of deliveries answered 2xx must be the set the
    // sink processed during this run, each processed once.
    total.acknowledged.sort_unstable();
    total.acknowledged.dedup();
    let acknowledged = total.acknowledged.len() as u64;
    let checksum = total.acknowledged.iter().fold(0u64, |sum, &i| {
        sum.wrapping_add(fnv1a(shared.deliveries[i as usize].delivery_id.as_bytes()))
    });
    let number = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(u64::MAX);
    let sink_checksum = |v: &serde_json::Value| {
        v["checksum"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let distinct = number(after, "distinct") - number(before, "distinct");
    let effects = number(after, "effects") - number(before, "effects");
    let duplicated = number(after, "duplicated") - number(before, "duplicated");
    let run_checksum = sink_checksum(after).wrapping_sub(sink_checksum(before));
    let exhausted = shared.next.load(Ordering::Relaxed) >= shared.deliveries.len();
    let cpu = |v: &serde_json::Value| v["cpu_seconds"].as_f64().unwrap_or(f64::NAN);
    let server_cpu = cpu(after) - cpu(at_start);
    let cpu_us_per_request = server_cpu / answered * 1e6;

    let rejections: Vec<String> = total
        .rejections
        .iter()
        .map(|(reason, n)| format!("{reason}:{n}"))
        .collect();
    let statuses: Vec<String> = total
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!("== {} ==", options.label);
    println!(
        "concurrency {}, measured window {window:.2} s (after {:.1} s warm-up), dup-ratio {}",
        options.concurrency,
        options.warmup.as_secs_f64(),
        options.dup_ratio
    );
    println!("requests/s   {rps:.0} ({answered} answered in the window)");
    println!("latency      p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs");
    println!(
        "statuses     {} ; answered by the layer itself: {} ; errors {}",
        statuses.join(" "),
        if rejections.is_empty() {
            "none".to_owned()
        } else {
            rejections.join(" ")
        },
        total.errors
    );
    println!(
        "server CPU   {server_cpu:.2} s in the window = {:.0} % of one core, {cpu_us_per_request:.2} µs/request",
        server_cpu / window * 100.0
    );
    println!(
        "generator    {:.0} % of its core (near 100 % means the generator, not the server, set the pace)",
        generator_cpu / window * 100.0
    );
    println!(
        "sink         {acknowledged} distinct deliveries answered 2xx; sink processed {distinct} distinct, {effects} effects, {duplicated} ids more than once"
    );
    if exhausted {
        println!(
            "note         all {} pre-signed deliveries were used; the run stopped early",
            shared.deliveries.len()
        );
    }
    let mut failures = Vec::new();
    if distinct != acknowledged || run_checksum != checksum {
        failures.push(format!(
            "the sink's set of processed deliveries ({distinct}) is not the set answered 2xx ({acknowledged})"
        ));
    }
    if effects != distinct || duplicated != 0 {
        failures.push(format!(
            "{} duplicate effects committed",
            effects.saturating_sub(distinct)
        ));
    }
    let ok = failures.is_empty();
    println!(
        "exactly-once {}",
        if ok {
            "OK: every acknowledged delivery processed once, none twice".to_owned()
        } else {
            format!("FAILED: {}", failures.join("; "))
        }
    );
    println!(
        "RESULT label={} rps={rps:.0} p50_us={p50:.0} p99_us={p99:.0} max_us={max:.0} errors={} non2xx={} cpu_us_per_req={cpu_us_per_request:.2} cpu_pct={:.0} generator_cpu_pct={:.0} acknowledged={acknowledged} duplicates={} exactly_once={}",
        options.label,
        total.errors,
        total.statuses.iter().filter(|(s, _)| !(200..300).contains(*s)).map(|(_, n)| n).sum::<u64>(),
        server_cpu / window * 100.0,
        generator_cpu / window * 100.0,
        effects.saturating_sub(distinct),
        if ok { "ok" } else { "FAILED" },
    );
    if ok {
        Ok(())
    } else {
        Err("exactly-once check failed".into())
    }
}
