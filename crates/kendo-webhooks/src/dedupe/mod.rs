//! De-duplication of Kendo's retries: the [`DedupeStore`] trait and its stores.
//!
//! Kendo retries a delivery when it sees a timeout or a non-2xx answer, and
//! sometimes delivers the same event twice. The layer *claims* each verified
//! delivery's key before calling your service and *settles* the claim after:
//!
//! | your service answered | the claim becomes | a later copy gets |
//! |---|---|---|
//! | — (still running) | in flight | waits (bounded) for it to settle, else 409 |
//! | 2xx | done | 200, not processed again |
//! | non-2xx, error, or the request was dropped | released | processed normally |
//!
//! A claim is taken with a [`ClaimToken`] chosen *before* the claim is sent,
//! so a request cancelled while its claim is on the wire can still give the
//! claim back: the layer's guard releases it when dropped at any point.
//!
//! Stores shared between processes give in-flight claims a short *lease*
//! ([`DedupeStore::lease`]) that the layer renews while your service runs
//! ([`DedupeStore::renew`]). If the replica holding a claim dies, its lease
//! lapses within that time and Kendo's next attempt is processed by another
//! replica. The trade-off: a replica that is alive but stalled (a long GC-like
//! pause, a frozen network to the store) past its lease lets a second copy
//! through; make the effect idempotent on the event id to absorb it.
//!
//! Only requests whose signature verified ever reach the store, so a forged
//! request cannot mark a real delivery as seen.
//!
//! [`MemoryStore`] (the default) keeps done keys in an LRU in this process.
//! With several replicas, use a shared store (`RedisStore` of the
//! `kendo-webhooks-redis` crate), or implement [`DedupeStore`] for your own.
//!
//! ```
//! use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new(10_000);
//! let token = ClaimToken::generate();
//! assert_eq!(store.claim("dlv_1", token).await?, Claim::Acquired);
//! assert_eq!(store.claim("dlv_1", ClaimToken::generate()).await?, Claim::InFlight);
//! store.complete("dlv_1", token).await?;
//! assert_eq!(store.claim("dlv_1", ClaimToken::generate()).await?, Claim::Done);
//! # Ok::<(), kendo_webhooks::dedupe::StoreError>(())
//! # }).unwrap();
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::event::Delivery;

pub(crate) mod claim;
mod memory;

pub use self::memory::MemoryStore;

/// A boxed future returned by [`DedupeStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which identifier de-duplicates deliveries.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupeKey {
    /// `X-Kendo-Delivery-Id`, bound to the signed event id (the default, as
    /// Kendo recommends de-duplicating on the delivery id).
    ///
    /// Kendo's retries repeat both ids, so they share the key. The header is
    /// *not* covered by the signature, which is why the key also holds a
    /// digest of the signed event id: someone holding one captured request
    /// can resend it under a fresh delivery id and have *that event*
    /// processed again, but can never mark another event's delivery as
    /// seen. Use [`DedupeKey::EventId`] (or an idempotent sink) where
    /// replays of the same event matter.
    #[default]
    DeliveryId,
    /// The body's `id`: signed, and the same on every retry of an event.
    ///
    /// Two deliveries of one event (for example a manual re-send from
    /// Kendo's dashboard) are then processed once.
    EventId,
}

/// Longest key a [`DedupeStore`] is given.
pub const MAX_KEY_LEN: usize = 256;

impl DedupeKey {
    /// The store key of `delivery`: at most [`MAX_KEY_LEN`] visible ASCII
    /// characters, whatever the (signed, but arbitrary) event id holds.
    ///
    /// - `DeliveryId`: `<delivery id>.<first 32 hex digits of SHA-256(event id)>`;
    /// - `EventId`: the event id itself when it is 1–256 visible ASCII
    ///   characters;
    /// - otherwise `sha256:<hex>` of what would not fit.
    ///
    /// ```
    /// use kendo_webhooks::{DedupeKey, Delivery, TestDelivery};
    ///
    /// let body = TestDelivery::example("call.uploaded").event_id("evt_1").created_at("2026-03-05T12:00:00Z").body();
    /// let delivery = Delivery::parse(body, "dlv_1", "call.uploaded")?;
    /// assert_eq!(DedupeKey::EventId.key_for(&delivery), "evt_1");
    /// assert!(DedupeKey::DeliveryId.key_for(&delivery).starts_with("dlv_1."));
    /// # Ok::<(), kendo_webhooks::Rejection>(())
    /// ```
    #[must_use]
    pub fn key_for(self, delivery: &Delivery) -> String {
        self.store_key(delivery).as_str().to_owned()
    }

    /// [`key_for`](DedupeKey::key_for), built on the stack.
    pub(crate) fn store_key(self, delivery: &Delivery) -> StoreKey {
        let mut key = InlineKey::default();
        match self {
            Self::DeliveryId => {
                let delivery_id = delivery.delivery_id();
                let event_digest = Sha256::digest(delivery.event_id().as_bytes());
                if is_visible_ascii(delivery_id) && delivery_id.len() + 33 <= MAX_KEY_LEN {
                    key.push(delivery_id.as_bytes());
                    key.push(b".");
                    key.push_hex(&event_digest[..16]);
                } else {
                    let mut hasher = Sha256::new();
                    hasher.update(delivery_id.as_bytes());
                    hasher.update([0]);
                    hasher.update(event_digest);
                    key.push(b"sha256:");
                    key.push_hex(&hasher.finalize());
                }
            }
            Self::EventId => {
                let event_id = delivery.event_id();
                if is_visible_ascii(event_id) && event_id.len() <= MAX_KEY_LEN {
                    key.push(event_id.as_bytes());
                } else {
                    key.push(b"sha256:");
                    key.push_hex(&Sha256::digest(event_id.as_bytes()));
                }
            }
        }
        StoreKey::Inline(key)
    }
}

/// A store key, held without a heap allocation when the layer builds it.
// The inline variant is the point: it lives in the request's future.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum StoreKey {
    Inline(InlineKey),
    Owned(Box<str>),
}

impl StoreKey {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Inline(key) => key.as_str(),
            Self::Owned(key) => key,
        }
    }
}

impl From<String> for StoreKey {
    fn from(key: String) -> Self {
        Self::Owned(key.into_boxed_str())
    }
}

/// Up to [`MAX_KEY_LEN`] visible ASCII characters, on the stack.
#[derive(Debug, Clone)]
pub(crate) struct InlineKey {
    bytes: [u8; MAX_KEY_LEN],
    len: usize,
}

impl Default for InlineKey {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_KEY_LEN],
            len: 0,
        }
    }
}

impl InlineKey {
    /// Appends visible ASCII; the caller keeps the total within [`MAX_KEY_LEN`].
    fn push(&mut self, ascii: &[u8]) {
        self.bytes[self.len..self.len + ascii.len()].copy_from_slice(ascii);
        self.len += ascii.len();
    }

    fn push_hex(&mut self, bytes: &[u8]) {
        let end = self.len + 2 * bytes.len();
        hex::encode_to_slice(bytes, &mut self.bytes[self.len..end])
            .expect("two hex digits per byte");
        self.len = end;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("keys are ASCII")
    }
}

fn is_visible_ascii(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The answer of [`DedupeStore::claim`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now held by the token given to [`DedupeStore::claim`];
    /// settle it with [`DedupeStore::complete`] or [`DedupeStore::release`].
    Acquired,
    /// Another request holds the key right now.
    InFlight,
    /// The key was processed successfully before.
    Done,
}

/// Identifies one claim, so that only its holder can renew or settle it.
///
/// The claimer chooses it *before* sending the claim: a request cancelled
/// while its claim is on the wire can then release whatever landed. A
/// shared store whose leases expire can see a slow replica try to release a
/// key that someone else has claimed since; the token tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(u64);

thread_local! {
    /// Per-thread hash keys (random) and counter: distinct tokens without a
    /// shared atomic.
    static TOKENS: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

impl ClaimToken {
    /// A token with this value; it must be unique among the live claims of
    /// one key (use [`ClaimToken::generate`] unless you replay a known one).
    #[must_use]
    pub fn new(value: u64) -> Self {
        Self(value)
    }

    /// A fresh token: a keyed hash of a per-thread counter, with random
    /// per-thread keys, so tokens drawn by other threads, processes and
    /// replicas collide with probability about 2⁻⁶⁴.
    #[must_use]
    pub fn generate() -> Self {
        TOKENS.with(|(keys, counter)| {
            let n = counter.get();
            counter.set(n.wrapping_add(1));
            Self(keys.hash_one(n))
        })
    }

    /// The value given to [`ClaimToken::new`].
    #[must_use]
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// A shared record of which deliveries are in flight or done.
///
/// Implementations must make `claim` atomic: of any number of concurrent
/// claims of one key, exactly one gets [`Claim::Acquired`]. An in-flight
/// claim lives until it is settled or, in stores shared between processes,
/// until its [`lease`](DedupeStore::lease) lapses without a
/// [`renew`](DedupeStore::renew), so a crashed process cannot block a key
/// for longer than one lease. Every operation that names a token must act
/// only if that token holds the key. Keys are 1 to [`MAX_KEY_LEN`] visible
/// ASCII characters (see [`DedupeKey::key_for`]).
pub trait DedupeStore: Send + Sync + 'static {
    /// Claims `key` for processing under `token`.
    ///
    /// Claiming again with the token that already holds the key is not
    /// required to succeed; the layer never does it.
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim>;

    /// Marks a claimed key done: later claims answer [`Claim::Done`].
    ///
    /// Also marks it done when the key is free (our lease lapsed while the
    /// service ran, and the effect did happen), but never over another
    /// token's claim.
    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()>;

    /// Gives a claimed key up, so the next delivery of it is processed.
    /// Does nothing if `token` does not hold the key, including when the
    /// claim never landed.
    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()>;

    /// How long an in-flight claim lives unless renewed, or `None` (the
    /// default) when claims live until settled, as in a store private to
    /// one process, which dies with its claims.
    ///
    /// With `Some(lease)`, the layer calls [`renew`](DedupeStore::renew)
    /// about every third of it while the inner service runs.
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// Extends the claim's lease to a full [`lease`](DedupeStore::lease)
    /// from now. `Ok(false)` when `token` no longer holds the key (the
    /// lease lapsed and someone else may be processing the delivery).
    ///
    /// The default, for stores without leases, does nothing and answers
    /// `Ok(true)`.
    fn renew<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, bool> {
        let _ = (key, token);
        Box::pin(std::future::ready(Ok(true)))
    }

    /// [`claim`](DedupeStore::claim) answered at once, without a future,
    /// by stores that never wait (a store private to this process):
    /// `Some(answer)`, the same answer `claim` would give. `None` (the
    /// default) tells the layer to call `claim` and await it.
    ///
    /// It saves the layer a boxed future per request; [`MemoryStore`]
    /// implements it.
    fn claim_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<Claim, StoreError>> {
        let _ = (key, token);
        None
    }

    /// [`complete`](DedupeStore::complete) done at once, as
    /// [`claim_at_once`](DedupeStore::claim_at_once): `Some` when done,
    /// `None` (the default) to have the layer call `complete`.
    fn complete_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<(), StoreError>> {
        let _ = (key, token);
        None
    }

    /// [`release`](DedupeStore::release) done at once, as
    /// [`claim_at_once`](DedupeStore::claim_at_once): `Some` when done,
    /// `None` (the default) to have the layer call `release`.
    fn release_at_once(&self, key: &str, token: ClaimToken) -> Option<Result<(), StoreError>> {
        let _ = (key, token);
        None
    }
}

macro_rules! forward_store {
    ($($pointer:ident),*) => {$(
        /// A store behind a pointer is a store: share one between layers,
        /// keep an `Arc` to read its metrics, or choose one at run time as
        /// a `Box<dyn DedupeStore>`.
        impl<T: DedupeStore + ?Sized> DedupeStore for $pointer<T> {
            fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
                (**self).claim(key, token)
            }

            fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
                (**self).complete(key, token)
            }

            fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
                (**self).release(key, token)
            }

            fn lease(&self) -> Option<Duration> {
                (**self).lease()
            }

            fn renew<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, bool> {
                (**self).renew(key, token)
            }

            fn claim_at_once(
                &self,
                key: &str,
                token: ClaimToken,
            ) -> Option<Result<Claim, StoreError>> {
                (**self).claim_at_once(key, token)
            }

            fn complete_at_once(
                &self,
                key: &str,
                token: ClaimToken,
            ) -> Option<Result<(), StoreError>> {
                (**self).complete_at_once(key, token)
            }

            fn release_at_once(
                &self,
                key: &str,
                token: ClaimToken,
            ) -> Option<Result<(), StoreError>> {
                (**self).release_at_once(key, token)
            }
        }
    )*};
}

forward_store!(Arc, Box);

/// A de-duplication store failed (unreachable, timed out, bad answer).
///
/// The layer's [`StoreErrorPolicy`](crate::StoreErrorPolicy) decides what
/// happens to the delivery.
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with a message saying what failed.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and the underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
