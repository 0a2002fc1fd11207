//! Run with: `cargo run --release --all-features --example memory`
//!
//! Peak memory of de-duplication: a `KendoWebhookLayer` whose `MemoryStore`
//! remembers 100,000 delivery ids receives 1,000,000 distinct signed
//! deliveries (`oneshot`, one at a time, each built just before it is sent).
//! It prints the resident set before and the peak (`VmHWM` in
//! `/proc/self/status`) after, and the bytes per remembered id.
//!
//! Options: `--capacity N` (default 100000), `--deliveries N` (default
//! 1000000), `--store-only` (call the store directly, without the layer, to
//! separate the store's own footprint from request churn).
//! Delivery ids are 36-character UUID-shaped strings.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use kendo_webhooks::dedupe::{Claim, ClaimToken};
use kendo_webhooks::{
    DedupeStore, KendoWebhookLayer, MemoryStore, SignedDelivery, TestDelivery, CALL_UPLOADED,
};
use tower::{Layer, ServiceExt};

const SECRET: &str = "whsec_memory_test";

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status (Linux only): {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} line in /proc/self/status"))
}

/// A UUID-shaped delivery id for delivery `n`.
fn delivery_id(n: u64) -> String {
    let hex = format!(
        "{:032x}",
        u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn parse_args() -> Result<(usize, u64, bool), String> {
    let (mut capacity, mut deliveries, mut store_only) = (100_000usize, 1_000_000u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store-only" => store_only = true,
            "--capacity" | "--deliveries" => {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                let n: u64 = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0 && n <= 100_000_000)
                    .ok_or(format!(
                        "{arg} {value}: expected a number from 1 to 100000000"
                    ))?;
                if arg == "--capacity" {
                    capacity = n as usize;
                } else {
                    deliveries = n;
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((capacity, deliveries, store_only))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (capacity, deliveries, store_only) = parse_args().map_err(|e| {
        format!("{e}\nusage: memory [--capacity N] [--deliveries N] [--store-only]")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = Arc::new(MemoryStore::new(capacity));
    let layer = KendoWebhookLayer::builder()
        .secret(SECRET)
        .dedupe_store(Arc::clone(&store))
        .build()?;
    let service = layer.layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let body = TestDelivery::example(CALL_UPLOADED)
        .event_id("evt_memory")
        .created_at("2026-03-05T12:00:00Z")
        .body();
    // Warm the allocator and runtime with one request before the baseline.
    let warm = SignedDelivery::builder(body.clone())
        .event(CALL_UPLOADED)
        .delivery_id("warm-up")
        .sign(SECRET)
        .request("/")?;
    runtime.block_on(service.clone().oneshot(warm))?;
    let rss_before = status_kib("VmRSS")?;

    for n in 0..deliveries {
        let id = delivery_id(n);
        if store_only {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let claim = ClaimToken::generate();
            match store.claim(&id, claim).as_mut().poll(&mut cx) {
                std::task::Poll::Ready(Ok(Claim::Acquired)) => {}
                other => {
                    return Err(format!("delivery {id} was new, the store said {other:?}").into())
                }
            };
            let _ = store.complete(&id, claim).as_mut().poll(&mut cx);
        } else {
            // Same body for every delivery: the body is not what is remembered.
            let request = SignedDelivery::builder(body.clone())
                .event(CALL_UPLOADED)
                .delivery_id(id)
                .sign(SECRET)
                .request("/")?;
            let response = runtime.block_on(service.clone().oneshot(request))?;
            if response.status() != StatusCode::OK {
                return Err(format!("delivery {n} answered {}", response.status()).into());
            }
        }
    }

    let peak = status_kib("VmHWM")?;
    let rss_after = status_kib("VmRSS")?;
    let remembered = store.done_len();
    let grown = peak.saturating_sub(rss_before) * 1024;
    println!(
        "mode {}, capacity {capacity}, deliveries {deliveries}, remembered {remembered}, in flight {}",
        if store_only { "store-only" } else { "layer" },
        store.in_flight_len()
    );
    println!(
        "VmRSS before {rss_before} KiB, after {rss_after} KiB, peak (VmHWM) {peak} KiB; \
         peak growth {:.1} MiB = {:.0} bytes per remembered id",
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / remembered.max(1) as f64
    );
    Ok(())
}
