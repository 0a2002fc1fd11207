//! Run with: `cargo run --release --all-features --example load_server -- layered`
//!
//! The server side of the load run (see `BENCHMARKS.md`): one axum route,
//! `POST /webhooks/kendo`, in one of two modes, plus `GET /stats`.
//!
//! - `bare`: the route reads the body and the delivery id header, nothing else;
//! - `layered`: the same route behind `KendoWebhookLayer` (signature check,
//!   typed parse, LRU de-duplication of delivery ids).
//!
//! Both modes commit the same "effect": they count the delivery id in a map,
//! so `GET /stats` can tell the load generator how many distinct deliveries
//! were processed and whether any was processed twice, plus the CPU time the
//! process has used (to tell a saturated server from a slow client).
//!
//! Options: `--addr 127.0.0.1:0` (loopback only), `--workers 1` (tokio
//! worker threads; pin the process with `taskset -c 0`), `--max-seconds 600`
//! (the server stops by itself after that), `KENDO_WEBHOOK_SECRET` (default
//! `whsec_load_test`, the generator's default too). `GET /cpu` answers the
//! CPU time alone (cheap enough to ask mid-run). It prints
//! `listening on http://ADDR` once bound and stops on Ctrl-C / SIGINT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use kendo_webhooks::{Delivery, KendoWebhookLayer, DELIVERY_ID_HEADER};

/// Default secret shared with the `load` example.
const DEFAULT_SECRET: &str = "whsec_load_test";

/// Effects committed, per delivery id.
#[derive(Default)]
struct Sink {
    effects: Mutex<HashMap<Box<str>, u32>>,
}

impl Sink {
    fn commit(&self, delivery_id: &str) {
        let mut effects = self.effects.lock().unwrap_or_else(PoisonError::into_inner);
        match effects.get_mut(delivery_id) {
            Some(count) => *count += 1,
            None => {
                effects.insert(delivery_id.into(), 1);
            }
        }
    }
}

/// FNV-1a of a delivery id; the generator sums the same over its ids.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// User + system CPU seconds of this process, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // The kernel reports clock ticks; USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

async fn bare(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delivery_id = headers
        .get(DELIVERY_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    std::hint::black_box(body.len());
    sink.commit(delivery_id);
    StatusCode::OK
}

async fn layered(
    State(sink): State<Arc<Sink>>,
    Extension(delivery): Extension<Delivery>,
) -> StatusCode {
    sink.commit(delivery.delivery_id());
    StatusCode::OK
}

async fn stats(State(sink): State<Arc<Sink>>) -> Json<serde_json::Value> {
    let effects = sink.effects.lock().unwrap_or_else(PoisonError::into_inner);
    let total: u64 = effects.values().map(|&n| u64::from(n)).sum();
    let duplicated = effects.values().filter(|&&n| n > 1).count();
    let checksum = effects
        .keys()
        .fold(0u64, |sum, key| sum.wrapping_add(fnv1a(key.as_bytes())));
    Json(serde_json::json!({
        "effects": total,
        "distinct": effects.len(),
        "duplicated": duplicated,
        "checksum": checksum.to_string(),
        "cpu_seconds": cpu_seconds(),
    }))
}

/// Just the CPU time: cheap enough to ask in the middle of a run.
async fn cpu() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "cpu_seconds": cpu_seconds() }))
}

struct Options {
    mode: String,
    addr: SocketAddr,
    workers: usize,
    max_seconds: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        mode: String::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: 1,
        max_seconds: 600,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => {
                let value = value("--addr")?;
                options.addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value}: {e} (expected e.g. 127.0.0.1:8080)"))?;
            }
            "--workers" => {
                let value = value("--workers")?;
                options.workers = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--workers {value}: expected a positive number"))?;
            }
            "--max-seconds" => {
                let value = value("--max-seconds")?;
                options.max_seconds = value
                    .parse()
                    .map_err(|e| format!("--max-seconds {value}: {e}"))?;
            }
            "bare" | "layered" if options.mode.is_empty() => options.mode = arg,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.mode.is_empty() {
        return Err("missing mode: bare or layered".into());
    }
    if !options.addr.ip().is_loopback() {
        return Err(format!(
            "--addr {}: only loopback addresses are allowed",
            options.addr
        ));
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args().map_err(|e| {
        format!("{e}\nusage: load_server bare|layered [--addr 127.0.0.1:0] [--workers 1] [--max-seconds 600]")
    })?;
    let secret = std::env::var("KENDO_WEBHOOK_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.into());
    let sink = Arc::new(Sink::default());
    let route = match options.mode.as_str() {
        "bare" => post(bare),
        _ => post(layered).layer(KendoWebhookLayer::new(secret)?),
    };
    let app = Router::new()
        .route("/webhooks/kendo", route)
        .route("/stats", get(stats))
        .route("/cpu", get(cpu))
        .with_state(sink);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.addr).await?;
        println!(
            "listening on http://{} ({} mode)",
            listener.local_addr()?,
            options.mode
        );
        let limit = Duration::from_secs(options.max_seconds);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = tokio::time::sleep(limit) => eprintln!("--max-seconds reached, stopping"),
                }
            })
            .await?;
        Ok(())
    })
}
