//! The default store: an in-process LRU of done keys plus a set of in-flight claims.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use super::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};

/// Number of independently locked shards; keeps two cores from queueing on
/// one lock.
const SHARDS: usize = 16;

/// A 128-bit keyed fingerprint of a key: what the store remembers instead
/// of the key itself (no allocation per claim, 16 bytes per entry).
pub(crate) type Fingerprint = u128;

/// An in-memory [`DedupeStore`] for a single receiver process.
///
/// Done keys live in LRU caches holding `capacity` keys in all (the oldest
/// are forgotten first); in-flight claims live beside them and are never
/// evicted, so memory is bounded by capacity plus concurrent requests. No
/// lock is held across an `.await`: every operation completes immediately.
///
/// Keys are remembered as 128-bit fingerprints (two SipHash-1-3 digests with
/// per-process random keys): about 100 bytes per remembered key in all
/// (measured 97–106 B, LRU links and map slack included); two distinct keys
/// share a fingerprint with probability about 2⁻¹²⁸.
///
/// Size it to cover Kendo's retry window (three attempts over about 25 s,
/// timeouts included) at your peak delivery rate, with a wide margin: the
/// default 100,000 keys cost about 10 MiB.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Padded]>,
    hash_keys: (RandomState, RandomState),
}

/// A shard on cache lines of its own, so two cores working on different
/// shards do not invalidate each other's lines.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

#[derive(Debug)]
struct Shard {
    done: LruCache<Fingerprint, (), Prehashed>,
    in_flight: HashMap<Fingerprint, u64, Prehashed>,
}

/// The maps' hasher: fingerprints are already uniformly random, so folding
/// them is enough.
#[derive(Debug, Clone, Copy, Default)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;

    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[derive(Debug)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only fingerprints are hashed (via `write_u128`); fold anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    #[allow(clippy::cast_possible_truncation)]
    fn write_u128(&mut self, value: u128) {
        self.0 ^= (value as u64) ^ ((value >> 64) as u64);
    }
}

impl MemoryStore {
    /// Default number of done keys remembered.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A store remembering about `capacity` done keys (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    done: LruCache::with_hasher(per_shard, Prehashed),
                    in_flight: HashMap::with_hasher(Prehashed),
                }))
            })
            .collect();
        Self {
            shards,
            hash_keys: (RandomState::new(), RandomState::new()),
        }
    }

    /// The key's fingerprint: what the store remembers of it.
    pub(crate) fn fingerprint(&self, key: &str) -> Fingerprint {
        let high = self.hash_keys.0.hash_one(key);
        let low = self.hash_keys.1.hash_one(key);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The shard holding the key of `fingerprint`, locked.
    fn shard(&self, fingerprint: Fingerprint) -> MutexGuard<'_, Shard> {
        #[allow(clippy::cast_possible_truncation)]
        let index = ((fingerprint >> 64) as u64 % SHARDS as u64) as usize;
        // A panic while holding the lock leaves consistent maps behind.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn claim_now(&self, key: &str, token: ClaimToken) -> Claim {
        self.claim_fingerprint(self.fingerprint(key), token)
    }

    fn settle_now(&self, key: &str, token: &ClaimToken, done: bool) {
        self.settle_fingerprint(self.fingerprint(key), *token, done);
    }

    /// [`claim`](DedupeStore::claim) of the key of `fingerprint`: the layer
    /// hashes a request's key once for its claim and its settlement.
    pub(crate) fn claim_fingerprint(&self, fingerprint: Fingerprint, token: ClaimToken) -> Claim {
        let mut shard = self.shard(fingerprint);
        if shard.in_flight.contains_key(&fingerprint) {
            return Claim::InFlight;
        }
        if shard.done.get(&fingerprint).is_some() {
            return Claim::Done;
        }
        shard.in_flight.insert(fingerprint, token.value());
        Claim::Acquired
    }

    /// [`complete`](DedupeStore::complete) (`done`) or
    /// [`release`](DedupeStore::release) of the key of `fingerprint`.
    pub(crate) fn settle_fingerprint(
        &self,
        fingerprint: Fingerprint,
        token: ClaimToken,
        done: bool,
    ) {
        let mut shard = self.shard(fingerprint);
        if shard.in_flight.get(&fingerprint) != Some(&token.value()) {
            return;
        }
        shard.in_flight.remove(&fingerprint);
        if done {
            shard.done.put(fingerprint, ());
        }
    }

    /// Number of keys currently remembered as done (for metrics and tests).
    pub fn done_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.0.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .done
                    .len()
            })
            .sum()
    }

    /// Number of claims currently in flight (for metrics and tests).
    pub fn in_flight_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.0.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .in_flight
                    .len()
            })
            .sum()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl DedupeStore for MemoryStore {
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
        let claim = self.claim_now(key, token);
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.settle_now(key, &token, true);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        self.settle_now(key, &token, false);
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<Claim, StoreError>> {
        Some(Ok(self.claim_now(key, token)))
    }

    fn complete_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<(), StoreError>> {
        self.settle_now(key, &token, true);
        Some(Ok(()))
    }

    fn release_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<(), StoreError>> {
        self.settle_now(key, &token, false);
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(store: &MemoryStore, key: &str) -> ClaimToken {
        let token = ClaimToken::generate();
        match store.claim_now(key, token) {
            Claim::Acquired => token,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn claim(store: &MemoryStore, key: &str) -> Claim {
        store.claim_now(key, ClaimToken::generate())
    }

    #[test]
    fn released_key_can_be_claimed_again() {
        let store = MemoryStore::new(10);
        let token = acquire(&store, "a");
        assert_eq!(claim(&store, "a"), Claim::InFlight);
        store.settle_now("a", &token, false);
        acquire(&store, "a");
    }

    #[test]
    fn stale_token_cannot_settle_a_newer_claim() {
        let store = MemoryStore::new(10);
        let old = acquire(&store, "a");
        store.settle_now("a", &old, false);
        let _new = acquire(&store, "a");
        store.settle_now("a", &old, true);
        assert_eq!(claim(&store, "a"), Claim::InFlight);
    }

    #[test]
    fn a_token_that_never_claimed_cannot_release() {
        let store = MemoryStore::new(10);
        let _held = acquire(&store, "a");
        store.settle_now("a", &ClaimToken::generate(), false);
        assert_eq!(claim(&store, "a"), Claim::InFlight);
    }

    #[test]
    fn lengths_count_exactly_what_is_held() {
        let store = MemoryStore::new(100);
        assert_eq!((store.done_len(), store.in_flight_len()), (0, 0));
        let a = acquire(&store, "a");
        let b = acquire(&store, "b");
        let _c = acquire(&store, "c");
        assert_eq!((store.done_len(), store.in_flight_len()), (0, 3));
        store.settle_now("a", &a, true);
        store.settle_now("b", &b, false);
        assert_eq!((store.done_len(), store.in_flight_len()), (1, 1));
    }

    #[test]
    fn in_flight_claims_are_never_evicted_but_done_keys_are() {
        let store = MemoryStore::new(SHARDS); // one done key per shard
        let _held = acquire(&store, "held");
        for i in 0..1_000 {
            let key = format!("k{i}");
            let token = acquire(&store, &key);
            store.settle_now(&key, &token, true);
        }
        assert_eq!(claim(&store, "held"), Claim::InFlight);
        // 1,000 keys reach every shard; each keeps exactly its one key.
        assert_eq!(store.done_len(), SHARDS);
        assert_eq!(store.in_flight_len(), 1);
        // The oldest done keys were forgotten.
        assert_eq!(claim(&store, "k0"), Claim::Acquired);
    }
}
