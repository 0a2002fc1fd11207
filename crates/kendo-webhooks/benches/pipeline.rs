//! `pipeline`: the whole [`KendoWebhookLayer`] around a no-op inner service,
//! against the floor of one HMAC-SHA256 plus one serde_json parse.
//!
//! Run with: `cargo bench --all-features --bench pipeline`
//!
//! Each iteration sends a fresh request with its own delivery id through
//! `ServiceExt::oneshot`, so the LRU really claims and settles a new key every
//! time (a steady state: the store is filled to capacity first, so every
//! settle also evicts). Requests are built outside the timing
//! (`iter_batched`). The floor verifies the same ~1 KiB body with a pre-keyed
//! HMAC and parses it once into an owned typed envelope, as a hand-written
//! receiver would.
//!
//! Before the timings, the bench counts heap allocations per request with a
//! counting global allocator (`stats_alloc`) and prints them.

use std::alloc::System;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use kendo_webhooks::dedupe::{Claim, ClaimToken, StoreError, StoreFuture};
use kendo_webhooks::{
    sign, DedupeStore, Delivery, KendoWebhookLayer, MemoryStore, SignedDelivery, Verifier,
    CALL_UPLOADED,
};
use serde::Deserialize;
use sha2::Sha256;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SECRET: &str = "whsec_bench_0123456789abcdef";
const CAPACITY: usize = 100_000;
/// Distinct pre-signed bodies the floor and the parts cycle through.
const SAMPLES: usize = 1024;
/// Requests per allocation count (averaged).
const COUNTED: usize = 10_000;

/// A `call.uploaded` envelope of about 1 KiB, shaped like Kendo's example
/// plus a summary field the typed event ignores.
fn body(event_id: &str) -> Bytes {
    let summary = "The customer asked about pricing tiers and onboarding. ".repeat(12);
    Bytes::from(format!(
        concat!(
            r#"{{"id":"{id}","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","#,
            r#""data":{{"callId":"call_{id}","agentId":"agent_1","agentName":"Sales Agent","#,
            r#""userId":"user_1","teamMemberUserId":"member_1","duration":245.5,"aiScore":"87","#,
            r#""timestamp":"2026-03-05T12:00:00Z","summary":"{summary}"}}}}"#
        ),
        id = event_id,
        summary = summary,
    ))
}

/// The floor's parse target: the same fields the crate extracts, owned.
#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorEnvelope {
    id: String,
    event: String,
    created_at: String,
    data: FloorCall,
}

#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct FloorCall {
    call_id: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    user_id: Option<String>,
    team_member_user_id: Option<String>,
    duration: Option<f64>,
    ai_score: Option<String>,
    timestamp: Option<String>,
}

/// A store that remembers nothing: every claim is acquired, settling is free.
/// Only for the breakdown (the layer's cost without the LRU's).
struct ForgetfulStore;

impl DedupeStore for ForgetfulStore {
    fn claim<'a>(&'a self, _key: &'a str, _token: ClaimToken) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(Ok(Claim::Acquired)))
    }

    fn complete<'a>(&'a self, _key: &'a str, _token: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn release<'a>(&'a self, _key: &'a str, _token: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim_at_once(&self, _key: &str, _token: ClaimToken) -> Option<Result<Claim, StoreError>> {
        Some(Ok(Claim::Acquired))
    }

    fn complete_at_once(&self, _key: &str, _token: ClaimToken) -> Option<Result<(), StoreError>> {
        Some(Ok(()))
    }

    fn release_at_once(&self, _key: &str, _token: ClaimToken) -> Option<Result<(), StoreError>> {
        Some(Ok(()))
    }
}

/// HMAC (pre-keyed, cloned), hex decode, constant-time compare, one parse.
fn floor(keyed: &Hmac<Sha256>, signature: &[u8], body: &[u8]) -> Option<FloorEnvelope> {
    let mut tag = [0u8; 32];
    hex::decode_to_slice(signature, &mut tag).ok()?;
    let mut mac = keyed.clone();
    mac.update(body);
    mac.verify_slice(&tag).ok()?;
    serde_json::from_slice(body).ok()
}

/// Deliveries with unique ids, numbered from `*next`.
fn request(next: &mut u64) -> Request<Full<Bytes>> {
    *next += 1;
    let event_id = format!("evt_{next:012}");
    let delivery_id = format!("dlv_{next:012}");
    SignedDelivery::builder(body(&event_id))
        .event(CALL_UPLOADED)
        .delivery_id(delivery_id)
        .sign(SECRET)
        .request("/webhooks/kendo")
        .expect("a valid request")
}

type Inner = tower::util::ServiceFn<
    fn(Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn no_op(_: Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
}

/// The layered service, with its store filled to capacity.
fn layered(
    runtime: &Runtime,
    next: &mut u64,
) -> (kendo_webhooks::KendoWebhook<Inner>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new(CAPACITY));
    let layer = KendoWebhookLayer::builder()
        .secret(SECRET)
        .dedupe_store(Arc::clone(&store))
        .build()
        .expect("a valid layer");
    let service = layer.layer(tower::service_fn(no_op as fn(_) -> _));
    for _ in 0..CAPACITY {
        let status = runtime.block_on(call(&service, request(next)));
        assert_eq!(status, StatusCode::OK, "a fresh delivery must be accepted");
    }
    (service, store)
}

async fn call(
    service: &kendo_webhooks::KendoWebhook<Inner>,
    req: Request<Full<Bytes>>,
) -> StatusCode {
    match service.clone().oneshot(req).await {
        Ok(response) => response.status(),
        Err(never) => match never {},
    }
}

/// Average heap allocations and bytes per call of `f` over `COUNTED` calls.
fn allocations_per_call(mut f: impl FnMut()) -> (f64, f64) {
    let region = Region::new(GLOBAL);
    for _ in 0..COUNTED {
        f();
    }
    let stats = region.change();
    (
        stats.allocations as f64 / COUNTED as f64,
        stats.bytes_allocated as f64 / COUNTED as f64,
    )
}

fn bench_pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let keyed = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    let mut next = 0;
    let (service, store) = layered(&runtime, &mut next);
    // Distinct deliveries for the floor and the parts, cycled through, so
    // neither gets one signature the branch predictor can learn (the layer
    // gets a new one every call).
    let samples: Vec<(Bytes, Bytes)> = (0..SAMPLES)
        .map(|i| {
            let body = body(&format!("evt_sample_{i:04}"));
            let signature = Bytes::from(sign(SECRET, &body));
            assert!(floor(&keyed, &signature, &body).is_some());
            (body, signature)
        })
        .collect();
    let mut turn = 0usize;
    let mut sample = move || {
        turn = (turn + 1) % SAMPLES;
        let (body, signature) = &samples[turn];
        (body.clone(), signature.clone())
    };
    println!("payload: {} bytes", sample().0.len());

    // Allocations: requests are built first, then only the calls are counted.
    let mut pending: Vec<_> = (0..COUNTED).map(|_| request(&mut next)).collect();
    let (layer_allocs, layer_bytes) = allocations_per_call(|| {
        let req = pending.pop().expect("one request per counted call");
        let status = runtime.block_on(call(&service, req));
        assert_eq!(status, StatusCode::OK);
    });
    let bare = tower::service_fn(no_op as fn(_) -> _);
    let mut pending: Vec<_> = (0..COUNTED).map(|_| request(&mut next)).collect();
    let (bare_allocs, bare_bytes) = allocations_per_call(|| {
        let req = pending.pop().expect("one request per counted call");
        let response = runtime.block_on(bare.oneshot(req));
        assert!(response.is_ok());
    });
    let (floor_allocs, floor_bytes) = allocations_per_call(|| {
        let (body, signature) = sample();
        assert!(floor(&keyed, &signature, &body).is_some());
    });
    let (parse_allocs, parse_bytes) = allocations_per_call(|| {
        let (body, _) = sample();
        assert!(Delivery::parse(body, "dlv_sample", CALL_UPLOADED).is_ok());
    });
    let (store_allocs, store_bytes) = {
        let counted_store = MemoryStore::new(CAPACITY);
        let keys: Vec<String> = (0..COUNTED).map(|i| format!("dlv_{i:012}")).collect();
        let mut keys = keys.iter();
        allocations_per_call(|| {
            let key = keys.next().expect("one key per counted call");
            let token = ClaimToken::generate();
            match counted_store.claim_at_once(key, token) {
                Some(Ok(Claim::Acquired)) => {}
                other => panic!("{key} is new, the store answered {other:?}"),
            };
            let settled = counted_store.complete_at_once(key, token);
            assert!(matches!(settled, Some(Ok(()))));
        })
    };
    println!(
        "allocations per request: layer {layer_allocs:.2} ({layer_bytes:.0} B), \
         no-op inner alone {bare_allocs:.2} ({bare_bytes:.0} B), \
         floor (HMAC + parse) {floor_allocs:.2} ({floor_bytes:.0} B); \
         of the layer's: Delivery::parse {parse_allocs:.2} ({parse_bytes:.0} B), \
         MemoryStore claim+complete {store_allocs:.2} ({store_bytes:.0} B, store not yet full)"
    );

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("floor_hmac_parse_1KiB", |b| {
        b.iter_batched(
            &mut sample,
            |(body, signature)| floor(&keyed, &signature, &body),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("noop_inner_oneshot_1KiB", |b| {
        b.iter_batched(
            || request(&mut next),
            |req| runtime.block_on(bare.oneshot(req)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("layer_oneshot_1KiB", |b| {
        b.iter_batched(
            || request(&mut next),
            |req| runtime.block_on(call(&service, req)),
            BatchSize::SmallInput,
        );
    });
    // The parts, for the breakdown in BENCHMARKS.md.
    let forgetful = KendoWebhookLayer::builder()
        .secret(SECRET)
        .dedupe_store(ForgetfulStore)
        .build()
        .expect("a valid layer")
        .layer(tower::service_fn(no_op as fn(_) -> _));
    group.bench_function("part_layer_without_lru_1KiB", |b| {
        b.iter_batched(
            || request(&mut next),
            |req| runtime.block_on(call(&forgetful, req)),
            BatchSize::SmallInput,
        );
    });
    let verifier = Verifier::new([SECRET]).expect("a valid verifier");
    group.bench_function("part_verify_1KiB", |b| {
        b.iter_batched(
            &mut sample,
            |(body, signature)| verifier.verify(&signature, &body).is_ok(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("part_floor_parse_1KiB", |b| {
        b.iter_batched(
            &mut sample,
            |(body, _)| serde_json::from_slice::<FloorEnvelope>(&body).is_ok(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("part_delivery_parse_1KiB", |b| {
        b.iter_batched(
            &mut sample,
            |(body, _)| Delivery::parse(body, "dlv_sample", CALL_UPLOADED).is_ok(),
            BatchSize::SmallInput,
        );
    });
    let parts_store = MemoryStore::new(CAPACITY);
    let mut key_number = 0u64;
    let mut claim_complete = move || {
        key_number += 1;
        let key = format!("dlv_{key_number:012}");
        let token = ClaimToken::generate();
        // As the layer calls it: the synchronous path, no future.
        match parts_store.claim_at_once(&key, token) {
            Some(Ok(Claim::Acquired)) => {
                let settled = parts_store.complete_at_once(&key, token);
                assert!(matches!(settled, Some(Ok(()))));
            }
            other => panic!("{key} is new, the store answered {other:?}"),
        };
    };
    for _ in 0..CAPACITY {
        claim_complete();
    }
    group.bench_function("part_store_claim_complete_100k", |b| {
        b.iter(&mut claim_complete)
    });
    group.finish();
    // Every timed call was a new delivery: the store stayed full and bounded.
    assert!(store.done_len() <= CAPACITY + 16, "{}", store.done_len());
    assert_eq!(store.in_flight_len(), 0);
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_pipeline(&mut criterion);
    criterion.final_summary();
}
