//! [`ClaimGuard`]: one delivery's claim in the de-duplication store, from
//! before it is sent until it is settled, whatever happens to the request.
//!
//! - The token is chosen before the claim is sent, and the guard is armed
//!   from then on: dropped at any point (client gone, timeout, the claim
//!   still on the wire), it releases whatever landed under that token.
//! - A key found in flight is claimed again, with backoff, for a bounded
//!   time: the holder may finish (then the copy is a duplicate), fail (then
//!   the key is free), or have died (then its lease lapses).
//! - While the inner service runs, the lease of a shared store is renewed
//!   every third of its length, so only a dead holder's claim lapses.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::memory::Fingerprint;
use super::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreError, StoreFuture, StoreKey};

/// First pause before claiming an in-flight key again; doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// Longest pause between two claims of an in-flight key: a waiting request
/// costs a store round-trip at most every this often.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// What the guard does if it is dropped now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDrop {
    /// Nothing of ours can be in the store.
    Nothing,
    /// Release: the claim may have landed, or the service did not succeed.
    Release,
    /// Complete: the service answered 2xx, the effect happened.
    Complete,
}

/// A claim that is settled exactly once: explicitly, or when dropped.
pub(crate) struct ClaimGuard {
    target: Target,
    token: ClaimToken,
    on_drop: OnDrop,
}

/// The store and what it is told of the key.
// The key stays inline (no allocation per request for other stores).
#[allow(clippy::large_enum_variant)]
enum Target {
    /// Any store, given the key.
    Store {
        store: Arc<dyn DedupeStore>,
        key: StoreKey,
    },
    /// A [`MemoryStore`], given the key's fingerprint: hashed once for the
    /// claim and its settlement instead of once per call.
    Memory {
        store: Arc<MemoryStore>,
        fingerprint: Fingerprint,
    },
}

impl ClaimGuard {
    /// A guard for `key` with a fresh token; nothing is sent yet.
    pub(crate) fn new(store: &Arc<dyn DedupeStore>, key: impl Into<StoreKey>) -> Self {
        Self::with(Target::Store {
            store: Arc::clone(store),
            key: key.into(),
        })
    }

    /// A guard for `key` in a [`MemoryStore`] (the same claims as
    /// [`new`](Self::new) with that store).
    pub(crate) fn in_memory(store: &Arc<MemoryStore>, key: &str) -> Self {
        Self::with(Target::Memory {
            fingerprint: store.fingerprint(key),
            store: Arc::clone(store),
        })
    }

    fn with(target: Target) -> Self {
        Self {
            target,
            token: ClaimToken::generate(),
            on_drop: OnDrop::Nothing,
        }
    }

    /// Completes (`done`) or releases the claim in a store that must be
    /// awaited (after [`settle_at_once`](Self::settle_at_once) said `None`).
    fn settle_later(&self, done: bool) -> StoreFuture<'_, ()> {
        match &self.target {
            Target::Store { store, key } if done => store.complete(key.as_str(), self.token),
            Target::Store { store, key } => store.release(key.as_str(), self.token),
            // Settled at once.
            Target::Memory { .. } => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// Completes (`done`) or releases the claim in a store that answers at
    /// once; `None` when the store must be awaited.
    fn settle_at_once(&self, done: bool) -> Option<Result<(), StoreError>> {
        match &self.target {
            Target::Memory { store, fingerprint } => {
                store.settle_fingerprint(*fingerprint, self.token, done);
                Some(Ok(()))
            }
            Target::Store { store, key } if done => {
                store.complete_at_once(key.as_str(), self.token)
            }
            Target::Store { store, key } => store.release_at_once(key.as_str(), self.token),
        }
    }

    /// Claims the key. While another request holds it, claims again with
    /// backoff for up to `wait`, and answers [`Claim::InFlight`] only if it
    /// is still held then.
    ///
    /// On `Ok(Claim::Acquired)` the guard holds the key; on an error it
    /// stays armed, so dropping it releases a claim that may have landed.
    pub(crate) async fn claim(&mut self, wait: Duration) -> Result<Claim, StoreError> {
        let deadline = Instant::now() + wait;
        let claim = self.claim_once().await?;
        if claim != Claim::InFlight || Instant::now() >= deadline {
            return Ok(claim);
        }
        // Rare: waiting for another holder. Boxed, so that the request's
        // future does not carry the timer's space on the common path.
        Box::pin(self.claim_again(deadline)).await
    }

    /// One claim; on anything but [`Claim::Acquired`] nothing of ours is stored.
    async fn claim_once(&mut self) -> Result<Claim, StoreError> {
        self.on_drop = OnDrop::Release;
        let claim = match &self.target {
            Target::Memory { store, fingerprint } => {
                store.claim_fingerprint(*fingerprint, self.token)
            }
            Target::Store { store, key } => match store.claim_at_once(key.as_str(), self.token) {
                Some(claim) => claim?,
                None => store.claim(key.as_str(), self.token).await?,
            },
        };
        if claim != Claim::Acquired {
            // Held by someone else, or done: nothing of ours is stored.
            self.on_drop = OnDrop::Nothing;
        }
        Ok(claim)
    }

    /// Claims an in-flight key again, with backoff, until `deadline`.
    async fn claim_again(&mut self, deadline: Instant) -> Result<Claim, StoreError> {
        let mut pause = FIRST_PAUSE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_PAUSE);
            let claim = self.claim_once().await?;
            if claim != Claim::InFlight || Instant::now() >= deadline {
                return Ok(claim);
            }
        }
    }

    /// Whether the store's claims have a lease, which
    /// [`renewing`](Self::renewing) renews.
    pub(crate) fn has_lease(&self) -> bool {
        match &self.target {
            Target::Store { store, .. } => store.lease().is_some(),
            Target::Memory { .. } => false,
        }
    }

    /// Runs `future` (the inner service) while renewing the claim's lease
    /// every third of it, when the store has leases.
    ///
    /// A renewal that fails or finds the lease lost is reported to
    /// `on_error` and the service goes on: its effect is still wanted, and
    /// an idempotent sink absorbs the copy another replica may then process.
    pub(crate) async fn renewing<F: Future>(
        &self,
        future: F,
        on_error: impl Fn(&StoreError),
    ) -> F::Output {
        let Target::Store { store, key } = &self.target else {
            return future.await;
        };
        let Some(lease) = store.lease() else {
            return future.await;
        };
        let every = (lease / 3).max(Duration::from_millis(1));
        let mut future = pin!(future);
        let mut timer = pin!(tokio::time::sleep(every));
        let mut renewal: Option<StoreFuture<'_, bool>> = None;
        poll_fn(|cx: &mut Context<'_>| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            loop {
                if let Some(pending) = renewal.as_mut() {
                    let Poll::Ready(renewed) = pending.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    renewal = None;
                    report_renewal(renewed, &on_error);
                    timer.as_mut().reset(Instant::now() + every);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                renewal = Some(store.renew(key.as_str(), self.token));
            }
        })
        .await
    }

    /// Settles a held claim: done after a 2xx (`success`), released
    /// otherwise. If this future is dropped before the store answered, the
    /// guard's `drop` settles the same way. A failure is returned (and
    /// traced); the lease, or the store's TTL, then frees the key.
    pub(crate) async fn settle(&mut self, success: bool) -> Result<(), StoreError> {
        self.on_drop = if success {
            OnDrop::Complete
        } else {
            OnDrop::Release
        };
        let result = match self.settle_at_once(success) {
            Some(result) => result,
            None => self.settle_later(success).await,
        };
        // Reached only if the store call finished: nothing left for `drop`.
        self.on_drop = OnDrop::Nothing;
        if let Err(error) = &result {
            store_error(
                error,
                "could not settle the claim; its lease (or TTL) frees the key",
            );
        }
        result
    }
}

fn report_renewal(renewed: Result<bool, StoreError>, on_error: &impl Fn(&StoreError)) {
    let error = match renewed {
        Ok(true) => return,
        Ok(false) => StoreError::new(
            "the claim's lease lapsed while the service ran; another replica may process \
             this delivery too (an idempotent sink absorbs it)",
        ),
        Err(error) => error,
    };
    store_error(
        &error,
        "could not renew the claim's lease; if it lapses, another replica may process this \
         delivery too",
    );
    on_error(&error);
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let complete = match self.on_drop {
            OnDrop::Nothing => return,
            OnDrop::Release => false,
            OnDrop::Complete => true,
        };
        let token = self.token;
        if let Some(result) = self.settle_at_once(complete) {
            if let Err(error) = result {
                store_error(
                    &error,
                    "could not settle a dropped claim; its lease (or TTL) frees the key",
                );
            }
            return;
        }
        let Target::Store { store, key } = &self.target else {
            return;
        };
        let store = Arc::clone(store);
        let key = key.clone();
        let mut settle = Box::pin(async move {
            let key = key.as_str();
            let result = if complete {
                store.complete(key, token).await
            } else {
                store.release(key, token).await
            };
            if let Err(error) = result {
                store_error(
                    &error,
                    "could not settle a dropped claim; its lease (or TTL) frees the key",
                );
            }
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tokio::runtime::Handle::try_current() {
            // In-memory stores finish at the first poll; others go on as a task.
            Ok(runtime) => {
                if settle.as_mut().poll(&mut cx).is_pending() {
                    runtime.spawn(settle);
                }
            }
            // Outside a runtime (being torn down), a store that needs one may
            // panic: never let that escape a `drop`, which could abort.
            Err(_) => {
                let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    settle.as_mut().poll(&mut cx)
                }));
                if !matches!(poll, Ok(Poll::Ready(()))) {
                    store_error(
                        &StoreError::new("no tokio runtime to settle on"),
                        "could not settle a dropped claim; its lease (or TTL) frees the key",
                    );
                }
            }
        }
    }
}

/// Logs a store failure the layer handles in the background (with the
/// `tracing` feature; nothing otherwise).
fn store_error(error: &StoreError, consequence: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(%error, "de-duplication store failed: {consequence}");
    #[cfg(not(feature = "tracing"))]
    let _ = (error, consequence);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::dedupe::MemoryStore;

    /// A store that records every call; `claim` lands at its first poll and
    /// then never answers (Redis paused after receiving the command).
    #[derive(Default)]
    struct Recording {
        memory: MemoryStore,
        calls: Mutex<Vec<String>>,
        claim_hangs: bool,
        release_hangs: bool,
        lease: Option<Duration>,
        lease_lost: bool,
    }

    impl Recording {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn log(&self, call: &str) {
            self.calls.lock().unwrap().push(call.to_owned());
        }
    }

    impl DedupeStore for Recording {
        fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
            self.log("claim");
            let landed = self.memory.claim(key, token);
            if self.claim_hangs {
                Box::pin(async move {
                    let _ = landed.await;
                    std::future::pending().await
                })
            } else {
                landed
            }
        }
        fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
            self.log("complete");
            self.memory.complete(key, token)
        }
        fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
            self.log("release");
            if self.release_hangs {
                Box::pin(std::future::pending())
            } else {
                self.memory.release(key, token)
            }
        }
        fn lease(&self) -> Option<Duration> {
            self.lease
        }
        fn renew<'a>(&'a self, _key: &'a str, _token: ClaimToken) -> StoreFuture<'a, bool> {
            self.log("renew");
            Box::pin(std::future::ready(Ok(!self.lease_lost)))
        }
    }

    fn store(recording: Recording) -> (Arc<Recording>, Arc<dyn DedupeStore>) {
        let recording = Arc::new(recording);
        let store: Arc<dyn DedupeStore> = recording.clone();
        (recording, store)
    }

    #[tokio::test]
    async fn a_claim_dropped_before_the_store_answered_is_released() {
        let (recording, store) = store(Recording {
            claim_hangs: true,
            ..Recording::default()
        });
        let mut guard = ClaimGuard::new(&store, "k".to_owned());
        let claim = tokio::time::timeout(Duration::from_millis(20), guard.claim(Duration::ZERO));
        assert!(claim.await.is_err(), "the claim should hang");
        assert_eq!(recording.memory.in_flight_len(), 1, "the claim landed");
        drop(guard);
        assert_eq!(recording.calls(), ["claim", "release"]);
        assert_eq!(recording.memory.in_flight_len(), 0);
    }

    #[tokio::test]
    async fn a_memory_guard_claims_the_same_keys_as_a_guard_given_the_key() {
        let memory = Arc::new(MemoryStore::new(100));
        let store: Arc<dyn DedupeStore> = memory.clone();
        let mut fast = ClaimGuard::in_memory(&memory, "k");
        assert_eq!(fast.claim(Duration::ZERO).await.unwrap(), Claim::Acquired);
        let mut slow = ClaimGuard::new(&store, "k".to_owned());
        assert_eq!(slow.claim(Duration::ZERO).await.unwrap(), Claim::InFlight);
        fast.settle(true).await.unwrap();
        assert_eq!(slow.claim(Duration::ZERO).await.unwrap(), Claim::Done);
        let mut dropped = ClaimGuard::in_memory(&memory, "other");
        assert_eq!(
            dropped.claim(Duration::ZERO).await.unwrap(),
            Claim::Acquired
        );
        drop(dropped);
        assert_eq!((memory.done_len(), memory.in_flight_len()), (1, 0));
    }

    #[tokio::test]
    async fn a_guard_that_found_the_key_held_releases_nothing() {
        let (recording, store) = store(Recording::default());
        let mut holder = ClaimGuard::new(&store, "k".to_owned());
        assert_eq!(holder.claim(Duration::ZERO).await.unwrap(), Claim::Acquired);
        let mut other = ClaimGuard::new(&store, "k".to_owned());
        assert_eq!(other.claim(Duration::ZERO).await.unwrap(), Claim::InFlight);
        drop(other);
        assert_eq!(recording.calls(), ["claim", "claim"]);
        drop(holder);
        assert_eq!(recording.calls(), ["claim", "claim", "release"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_key_once_the_holder_releases_it() {
        let (_recording, store) = store(Recording::default());
        let mut holder = ClaimGuard::new(&store, "k".to_owned());
        holder.claim(Duration::ZERO).await.unwrap();
        let waiter = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let mut waiter = ClaimGuard::new(&store, "k".to_owned());
                let claim = waiter.claim(Duration::from_secs(4)).await.unwrap();
                (claim, Instant::now())
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let released_at = Instant::now();
        holder.settle(false).await.unwrap();
        let (claim, claimed_at) = waiter.await.unwrap();
        assert_eq!(claim, Claim::Acquired);
        // Claimed again within one pause of the release.
        assert!(claimed_at - released_at <= MAX_PAUSE, "{claimed_at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_answers_duplicate_once_the_holder_completes() {
        let (_recording, store) = store(Recording::default());
        let mut holder = ClaimGuard::new(&store, "k".to_owned());
        holder.claim(Duration::ZERO).await.unwrap();
        let waiter = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let mut waiter = ClaimGuard::new(&store, "k".to_owned());
                waiter.claim(Duration::from_secs(4)).await.unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.settle(true).await.unwrap();
        assert_eq!(waiter.await.unwrap(), Claim::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline() {
        let (_recording, store) = store(Recording::default());
        let mut holder = ClaimGuard::new(&store, "k".to_owned());
        holder.claim(Duration::ZERO).await.unwrap();
        let start = Instant::now();
        let mut waiter = ClaimGuard::new(&store, "k".to_owned());
        let claim = waiter.claim(Duration::from_secs(4)).await.unwrap();
        assert_eq!(claim, Claim::InFlight);
        assert_eq!(Instant::now() - start, Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_renewed_every_third_while_the_service_runs() {
        let (recording, store) = store(Recording {
            lease: Some(Duration::from_secs(3)),
            ..Recording::default()
        });
        let mut guard = ClaimGuard::new(&store, "k".to_owned());
        guard.claim(Duration::ZERO).await.unwrap();
        let answer = guard
            .renewing(
                async {
                    tokio::time::sleep(Duration::from_millis(3_500)).await;
                    7
                },
                |error| panic!("{error}"),
            )
            .await;
        assert_eq!(answer, 7);
        // At 1 s, 2 s and 3 s.
        assert_eq!(recording.calls(), ["claim", "renew", "renew", "renew"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_is_reported_and_the_service_goes_on() {
        let (_recording, store) = store(Recording {
            lease: Some(Duration::from_secs(3)),
            lease_lost: true,
            ..Recording::default()
        });
        let mut guard = ClaimGuard::new(&store, "k".to_owned());
        guard.claim(Duration::ZERO).await.unwrap();
        let reported = Mutex::new(Vec::new());
        let answer = guard
            .renewing(
                async {
                    tokio::time::sleep(Duration::from_millis(2_500)).await;
                    "done"
                },
                |error| reported.lock().unwrap().push(error.to_string()),
            )
            .await;
        assert_eq!(answer, "done");
        let reported = reported.into_inner().unwrap();
        assert_eq!(reported.len(), 2, "{reported:?}");
        assert!(reported[0].contains("lease lapsed"), "{reported:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stores_without_leases_are_never_renewed() {
        let (recording, store) = store(Recording::default());
        let mut guard = ClaimGuard::new(&store, "k".to_owned());
        guard.claim(Duration::ZERO).await.unwrap();
        guard
            .renewing(tokio::time::sleep(Duration::from_secs(30)), |_| {})
            .await;
        guard.settle(true).await.unwrap();
        drop(guard);
        assert_eq!(recording.calls(), ["claim", "complete"]);
    }

    /// Everything a fmt subscriber writes, as text.
    #[cfg(feature = "tracing")]
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    #[cfg(feature = "tracing")]
    impl Logs {
        /// Sends this thread's events here until the guard is dropped.
        fn capture(&self) -> tracing::subscriber::DefaultGuard {
            let writer = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_default(subscriber)
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[cfg(feature = "tracing")]
    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[cfg(feature = "tracing")]
    #[tokio::test(start_paused = true)]
    async fn a_lease_found_lost_while_the_service_runs_is_reported() {
        let logs = Logs::default();
        let _capture = logs.capture();
        let (_recording, store) = store(Recording {
            lease: Some(Duration::from_secs(3)),
            lease_lost: true,
            ..Recording::default()
        });
        let mut guard = ClaimGuard::new(&store, "k".to_owned());
        guard.claim(Duration::ZERO).await.unwrap();
        guard
            .renewing(tokio::time::sleep(Duration::from_millis(1_500)), |_| {})
            .await;
        let logs = logs.text();
        assert!(
            logs.contains("the claim's lease lapsed while the service ran"),
            "{logs}"
        );
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn a_claim_dropped_outside_a_runtime_that_cannot_settle_is_reported() {
        let logs = Logs::default();
        let _capture = logs.capture();
        let (recording, store) = store(Recording {
            release_hangs: true,
            ..Recording::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let guard = runtime.block_on(async {
            let mut guard = ClaimGuard::new(&store, "k".to_owned());
            guard.claim(Duration::ZERO).await.unwrap();
            guard
        });
        drop(runtime);
        drop(guard);
        assert_eq!(recording.calls(), ["claim", "release"]);
        let logs = logs.text();
        assert!(logs.contains("no tokio runtime to settle on"), "{logs}");
    }
}
