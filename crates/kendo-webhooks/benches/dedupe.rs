//! `dedupe`: [`MemoryStore`] claim + complete throughput, one thread against
//! two threads contending, at 10 k and 1 M capacity.
//!
//! Run with: `cargo bench --all-features --bench dedupe`
//!
//! Every operation claims a new key and marks it done, through the
//! [`DedupeStore`] trait as the layer does (boxed futures polled once). The
//! store is filled to capacity first, so each completion also evicts the
//! oldest key: the steady state of a long-running receiver. Criterion's
//! figure is wall time per operation, so with two threads it is the
//! aggregate: a smaller figure than one thread's means more throughput.
//!
//! `cpu_reference` runs the same harness on pure CPU work that shares
//! nothing: its two-thread gain is the most the store could show on this
//! machine at that moment (less than 2x when other processes compete for
//! the cores).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kendo_webhooks::dedupe::{Claim, ClaimToken};
use kendo_webhooks::{DedupeStore, MemoryStore};

/// Polls a store future that must be ready at once (the memory store's are).
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("MemoryStore futures complete immediately"),
    }
}

/// A delivery-id-like key (`dlv_` + 16 hex digits) in a stack buffer.
fn key(n: u64, buf: &mut [u8; 20]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf[..4].copy_from_slice(b"dlv_");
    for (i, slot) in buf[4..].iter_mut().enumerate() {
        *slot = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("ASCII")
}

/// Claims `n` as a new key and marks it done.
fn claim_complete(store: &MemoryStore, n: u64) {
    let mut buf = [0u8; 20];
    let key = key(n, &mut buf);
    let token = ClaimToken::generate();
    match now(store.claim(key, token)) {
        Ok(Claim::Acquired) => {
            now(store.complete(key, token)).expect("the memory store never fails");
        }
        other => panic!("key {key} was new, the store answered {other:?}"),
    }
}

/// Pure CPU work of about one store operation's length, touching no shared
/// memory: how much two threads can gain on this machine right now.
fn reference_op(n: u64) {
    let mut x = n | 1;
    for _ in 0..160 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x);
}

/// Runs `iters` operations split over `threads` threads; returns wall time.
fn run(store: &MemoryStore, next: &AtomicU64, threads: u64, iters: u64) -> Duration {
    run_op(next, threads, iters, |n| claim_complete(store, n))
}

/// Runs `iters` calls of `op` split over `threads` threads; returns wall time.
fn run_op(next: &AtomicU64, threads: u64, iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let base = next.fetch_add(per_thread * threads, Ordering::Relaxed);
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    let first = base + t * per_thread;
                    barrier.wait();
                    for n in first..first + per_thread {
                        op(n);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().expect("a bench thread panicked");
        }
        start.elapsed()
    })
}

fn bench_dedupe(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedupe");
    group.throughput(Throughput::Elements(1));
    // The ceiling for the two-thread figures, measured in the same run.
    let counter = AtomicU64::new(0);
    for threads in [1u64, 2] {
        group.bench_function(
            BenchmarkId::new(format!("{threads}_thread"), "cpu_reference"),
            |b| {
                b.iter_custom(|iters| run_op(&counter, threads, iters, reference_op));
            },
        );
    }
    for (capacity, name) in [(10_000usize, "10k"), (1_000_000, "1M")] {
        let store = MemoryStore::new(capacity);
        let next = AtomicU64::new(0);
        run(&store, &next, 2, capacity as u64);
        assert!(
            store.done_len() >= capacity * 9 / 10,
            "{}",
            store.done_len()
        );
        for threads in [1u64, 2] {
            group.bench_function(BenchmarkId::new(format!("{threads}_thread"), name), |b| {
                b.iter_custom(|iters| run(&store, &next, threads, iters));
            });
        }
        assert!(store.done_len() <= capacity + 16, "{}", store.done_len());
        assert_eq!(store.in_flight_len(), 0);
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_dedupe(&mut criterion);
    criterion.final_summary();
}
