//! Run with: `cargo run --release -p kendo-load --bin load_server -- layered`
//!
//! The server side of the load run (see `BENCHMARKS.md`): one axum route,
//! `POST /webhooks/kendo`, in one of four modes, plus `GET /stats`.
//!
//! - `bare`: the route reads the body and the delivery id header, nothing else;
//! - `layered`: the same route behind `KendoWebhookLayer` (signature check,
//!   typed parse, LRU de-duplication of delivery ids);
//! - `handwritten`: what a competent receiver writes by hand in its axum
//!   handler: a bounded body read, a pre-keyed HMAC compared in constant
//!   time, a typed serde parse, and a bounded LRU of delivery ids (no
//!   in-flight tracking, no hooks);
//! - `svix`: the `svix` crate's `Webhook::verify` (headers `svix-id`,
//!   `svix-timestamp`, `svix-signature`; run the generator with
//!   `--scheme svix`) and the same typed parse, without de-duplication.
//!
//! All modes commit the same "effect": they count the delivery id in a map,
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

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER,
};
use serde::Deserialize;
use sha2::Sha256;

/// Default secret shared with the `load` example.
const DEFAULT_SECRET: &str = "whsec_load_test";

/// Largest body the hand-written receivers read (the layer's default).
const BODY_LIMIT: usize = 64 * 1024;
/// Delivery ids the hand-written receiver remembers (the layer's default).
const SEEN_CAPACITY: usize = 100_000;

/// Effects committed, per delivery id, and the peers' state.
struct Sink {
    effects: Mutex<HashMap<Box<str>, u32>>,
    /// `handwritten`: the secret's HMAC, keyed once.
    keyed: Hmac<Sha256>,
    /// `handwritten`: delivery ids processed, oldest forgotten first.
    seen: Mutex<lru::LruCache<Box<str>, ()>>,
    /// `svix`: the same secret's bytes as svix's key.
    svix: svix::webhooks::Webhook,
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

/// The envelope a hand-written receiver parses: the fields the layer
/// extracts for `call.uploaded`, owned.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Envelope {
    id: String,
    event: String,
    created_at: String,
    data: CallData,
}

#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct CallData {
    call_id: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    user_id: Option<String>,
    team_member_user_id: Option<String>,
    duration: Option<f64>,
    ai_score: Option<String>,
    timestamp: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A hand-written receiver: verify, parse, de-duplicate, commit.
async fn handwritten(State(sink): State<Arc<Sink>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE;
    };
    let mut tag = [0u8; 32];
    let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if hex::decode_to_slice(signature.unwrap_or_default(), &mut tag).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let mut mac = sink.keyed.clone();
    mac.update(&body);
    if mac.verify_slice(&tag).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (Some(delivery_id), Some(event)) = (
        header(&parts.headers, DELIVERY_ID_HEADER.as_str()),
        header(&parts.headers, EVENT_HEADER.as_str()),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    if envelope.event != event {
        return StatusCode::BAD_REQUEST;
    }
    let lock = || sink.seen.lock().unwrap_or_else(PoisonError::into_inner);
    if lock().get(delivery_id).is_some() {
        return StatusCode::OK;
    }
    sink.commit(delivery_id);
    lock().put(delivery_id.into(), ());
    StatusCode::OK
}

/// svix's verification (its own headers) and the same typed parse.
async fn svix(State(sink): State<Arc<Sink>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE;
    };
    if sink.svix.verify(&body, &parts.headers).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (Some(delivery_id), Some(event)) = (
        header(&parts.headers, "svix-id"),
        header(&parts.headers, EVENT_HEADER.as_str()),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    if envelope.event != event {
        return StatusCode::BAD_REQUEST;
    }
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
            "bare" | "layered" | "handwritten" | "svix" if options.mode.is_empty() => {
                options.mode = arg;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.mode.is_empty() {
        return Err("missing mode: bare, layered, handwritten or svix".into());
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
        format!("{e}\nusage: load_server bare|layered|handwritten|svix [--addr 127.0.0.1:0] [--workers 1] [--max-seconds 600]")
    })?;
    let secret = std::env::var("KENDO_WEBHOOK_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.into());
    let sink = Arc::new(Sink {
        effects: Mutex::default(),
        keyed: Hmac::new_from_slice(secret.as_bytes())?,
        seen: Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(SEEN_CAPACITY).expect("not zero"),
        )),
        svix: svix::webhooks::Webhook::from_bytes(secret.as_bytes().to_vec())?,
    });
    let route = match options.mode.as_str() {
        "bare" => post(bare),
        "handwritten" => post(handwritten),
        "svix" => post(svix),
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
