//! `verify`: [`Verifier::verify`] against the floor of a bare HMAC-SHA256.
//!
//! Run with: `cargo bench --all-features --bench verify`
//!
//! The floor is what any correct check must do: clone an HMAC keyed once in
//! advance, feed it the body, hex-decode the header into 32 bytes and compare
//! in constant time (`verify_slice`, which uses `subtle`). Both sides get the
//! same body and the same 64-hex-digit header, so the ratio of the two
//! figures at each size is the crate's overhead.
//!
//! The `floor`/`crate` lines check one fixed signature per size, which the
//! branch predictor learns; the `_cycled` lines (256 B and 1 KiB) cycle
//! through 1,024 distinct signed bodies, as real traffic does.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use kendo_webhooks::{sign, Verifier};
use sha2::Sha256;

const SECRET: &str = "whsec_bench_0123456789abcdef";
/// Distinct signed bodies cycled through by the `_cycled` lines.
const CYCLED: usize = 1024;
const SIZES: [(usize, &str); 4] = [
    (256, "256B"),
    (1024, "1KiB"),
    (16 * 1024, "16KiB"),
    (1024 * 1024, "1MiB"),
];

/// A JSON-looking body of exactly `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    let mut body = br#"{"id":"evt_1","event":"call.uploaded","data":{"pad":""#.to_vec();
    while body.len() + 3 < len {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(br#""}}"#);
    body.truncate(len);
    body
}

/// The floor: pre-keyed HMAC cloned per message, hex decode, `verify_slice`.
fn floor(keyed: &Hmac<Sha256>, signature: &[u8], body: &[u8]) -> bool {
    let mut tag = [0u8; 32];
    if hex::decode_to_slice(signature, &mut tag).is_err() {
        return false;
    }
    let mut mac = keyed.clone();
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The floor compiled as its own function (not inlined into the loop), as
/// the crate's `verify` is: separates codegen effects from extra work.
#[inline(never)]
fn floor_not_inlined(keyed: &Hmac<Sha256>, signature: &[u8], body: &[u8]) -> bool {
    floor(keyed, signature, body)
}

fn bench_verify(c: &mut Criterion) {
    let verifier = Verifier::new([SECRET]).expect("a non-empty secret builds a verifier");
    let keyed = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    let mut group = c.benchmark_group("verify");
    for (len, name) in SIZES {
        let body = body_of(len);
        let signature = sign(SECRET, &body);
        // Both must accept the same bytes, or the comparison means nothing.
        assert_eq!(verifier.verify(signature.as_bytes(), &body), Ok("#1"));
        assert!(floor(&keyed, signature.as_bytes(), &body));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("floor", name), &body, |b, body| {
            b.iter(|| floor(&keyed, black_box(signature.as_bytes()), black_box(body)));
        });
        group.bench_with_input(
            BenchmarkId::new("floor_not_inlined", name),
            &body,
            |b, body| {
                b.iter(|| {
                    floor_not_inlined(&keyed, black_box(signature.as_bytes()), black_box(body))
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("crate", name), &body, |b, body| {
            b.iter(|| {
                verifier
                    .verify(black_box(signature.as_bytes()), black_box(body))
                    .is_ok()
            });
        });
    }
    // Real signatures are random: cycle through distinct bodies so the
    // branch predictor cannot learn one signature's hex digits.
    for (len, name) in &SIZES[..2] {
        let deliveries: Vec<(Vec<u8>, String)> = (0..CYCLED)
            .map(|i| {
                let mut body = body_of(*len);
                body[8..12].copy_from_slice(format!("{:04}", i % 10_000).as_bytes());
                let signature = sign(SECRET, &body);
                assert!(verifier.verify(signature.as_bytes(), &body).is_ok());
                (body, signature)
            })
            .collect();
        group.throughput(Throughput::Bytes(*len as u64));
        let mut turn = 0;
        group.bench_function(BenchmarkId::new("floor_cycled", name), |b| {
            b.iter(|| {
                turn = (turn + 1) % CYCLED;
                let (body, signature) = &deliveries[turn];
                floor(&keyed, black_box(signature.as_bytes()), black_box(body))
            });
        });
        group.bench_function(BenchmarkId::new("crate_cycled", name), |b| {
            b.iter(|| {
                turn = (turn + 1) % CYCLED;
                let (body, signature) = &deliveries[turn];
                verifier
                    .verify(black_box(signature.as_bytes()), black_box(body))
                    .is_ok()
            });
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_verify(&mut criterion);
    criterion.final_summary();
}
