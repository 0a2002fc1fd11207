//! [`KendoWebhookLayer`] and its builder: configuration only.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tower_layer::Layer;

use crate::body::{BodyBudget, ReadDeadlines, SMALL_BODY};
use crate::config::{Config, OutcomeHook};
use crate::dedupe::{DedupeKey, DedupeStore, MemoryStore};
use crate::error::BuildError;
use crate::outcome::Report;
use crate::policy::StoreErrorPolicy;
use crate::service::KendoWebhook;
use crate::signature::{Clock, Secret, Verifier};

/// Default body limit: 64 KiB.
///
/// Kendo's payloads are under 1 KiB (a handful of ids, a name, two numbers
/// and two timestamps); 64 KiB leaves room for 60 times more fields without
/// letting one request hold much memory. Raise it only if Kendo documents
/// larger events.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default body budget: 16 MiB of bodies buffered at once, by all requests
/// together.
///
/// That is 256 maximum-size bodies at the default limit, or over 16,000
/// Kendo-size ones. A flood of stalled bodies is answered 503 past it
/// instead of growing the process; the last eighth is kept for bodies of at
/// most 16 KiB, so real deliveries still get through such a flood.
pub const DEFAULT_BODY_BUDGET: usize = 16 * 1024 * 1024;
/// Default wait for a delivery that another request holds: 4 s.
///
/// When a replica dies mid-request, Kendo retries about 1 s later; the
/// retry then waits for the dead claim's lease to lapse (a shared store's
/// default lease is 3 s) and is processed, well inside Kendo's 10 s
/// timeout. When the holder is alive, the wait ends as soon as it answers:
/// a copy of a delivery that succeeded gets 200, one that failed is
/// processed.
pub const DEFAULT_IN_FLIGHT_WAIT: Duration = Duration::from_secs(4);
/// Default body read deadline: Kendo's own request timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default body start deadline: 2 s for the first byte of the body.
///
/// Kendo sends its small bodies with the headers; 2 s leaves room for a
/// lost packet's retransmission. A request that declared a body and sends
/// nothing is answered 408 after it, and until then holds no share of the
/// body budget.
pub const DEFAULT_BODY_START_TIMEOUT: Duration = Duration::from_secs(2);
/// Default minimum body rate: 1,024 bytes a second, on average.
///
/// Each 1,024 bytes received give the body one more second beyond the start
/// deadline (never past the read deadline), so a Kendo-size body trickled a
/// byte at a time is answered 408 within about three seconds.
pub const DEFAULT_MIN_BODY_RATE: usize = 1024;

/// Layer that applies [`KendoWebhook`], which verifies, de-duplicates and
/// types Kendo deliveries before they reach the inner service.
///
/// Build it once at start-up and share it (it is cheap to clone):
///
/// ```
/// use kendo_webhooks::{KendoWebhookLayer, Secret};
///
/// let layer = KendoWebhookLayer::builder()
///     .secret(Secret::new("whsec_current").with_label("current"))
///     .secret(Secret::new("whsec_previous").with_label("previous"))
///     .build()?;
/// # Ok::<(), kendo_webhooks::BuildError>(())
/// ```
#[derive(Clone)]
pub struct KendoWebhookLayer {
    config: Arc<Config>,
}

impl KendoWebhookLayer {
    /// A layer with one secret and every default.
    ///
    /// # Errors
    ///
    /// [`BuildError::EmptySecret`] when the secret is empty.
    pub fn new(secret: impl Into<Secret>) -> Result<Self, BuildError> {
        Self::builder().secret(secret).build()
    }

    /// A builder to configure secrets, limits, de-duplication and hooks.
    pub fn builder() -> KendoWebhookLayerBuilder {
        KendoWebhookLayerBuilder::default()
    }

    /// Replaces the secrets of this layer and of every service built from
    /// it (or from its clones), atomically and without a restart: each
    /// request is verified against either the whole old set or the whole
    /// new one, never a mix.
    ///
    /// To rotate without losing deliveries, first add the new secret next
    /// to the old one, then, once Kendo signs with the new one
    /// ([`Delivery::secret_label`](crate::Delivery::secret_label) tells),
    /// remove the old one.
    ///
    /// ```
    /// use kendo_webhooks::{KendoWebhookLayer, Secret};
    ///
    /// let layer = KendoWebhookLayer::new(Secret::new("whsec_old").with_label("old"))?;
    /// layer.replace_secrets([
    ///     Secret::new("whsec_new").with_label("new"),
    ///     Secret::new("whsec_old").with_label("old"),
    /// ])?;
    /// # Ok::<(), kendo_webhooks::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`BuildError::NoSecret`] or [`BuildError::EmptySecret`]; the secrets
    /// in use are then left unchanged.
    pub fn replace_secrets<I>(&self, secrets: I) -> Result<(), BuildError>
    where
        I: IntoIterator,
        I::Item: Into<Secret>,
    {
        let verifier = Verifier::new(secrets)?;
        self.config.verifier.store(Arc::new(verifier));
        Ok(())
    }
}

impl<S> Layer<S> for KendoWebhookLayer {
    type Service = KendoWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KendoWebhook::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for KendoWebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// Builder of a [`KendoWebhookLayer`]; see each method for its default.
#[derive(Default)]
#[must_use]
pub struct KendoWebhookLayerBuilder {
    secrets: Vec<Secret>,
    body_limit: Option<usize>,
    body_budget: Option<usize>,
    read_timeout: Option<Duration>,
    body_start_timeout: Option<Duration>,
    min_body_rate: Option<usize>,
    in_flight_wait: Option<Duration>,
    store: Option<Arc<dyn DedupeStore>>,
    /// `store` when it is a [`MemoryStore`].
    memory: Option<Arc<MemoryStore>>,
    capacity: Option<usize>,
    dedupe_key: DedupeKey,
    replay_tolerance: Option<Duration>,
    clock: Option<Arc<Clock>>,
    store_error_policy: StoreErrorPolicy,
    on_outcome: Option<Arc<OutcomeHook>>,
}

impl KendoWebhookLayerBuilder {
    /// Adds a secret; at least one is required. Add the current secret and,
    /// during a rotation, the previous one: a delivery signed by any of them
    /// is accepted, and [`Delivery::secret_label`](crate::Delivery::secret_label)
    /// says which.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Largest body accepted, declared or streamed (default 64 KiB, see
    /// [`DEFAULT_BODY_LIMIT`]); larger requests get 413, and never more
    /// than this is held in memory per request.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Most bytes of request bodies buffered at once, by all in-flight
    /// requests together (default 16 MiB, see [`DEFAULT_BODY_BUDGET`]).
    ///
    /// A request that would exceed it gets 503 with `Retry-After`
    /// ([`Rejection::BodyBudgetExhausted`](crate::Rejection::BodyBudgetExhausted))
    /// at once. It is charged for the bytes received, as they arrive, never
    /// for a declared `Content-Length`: a request that declares a body and
    /// sends nothing holds none of it (and gets 408 after the
    /// [body start deadline](Self::body_start_timeout)). Bodies larger than 16 KiB
    /// may fill only seven eighths of it, so a flood of large stalled
    /// bodies leaves room for Kendo's small ones. It must be at least
    /// eight sevenths of the body limit.
    pub fn body_budget(mut self, bytes: usize) -> Self {
        self.body_budget = Some(bytes);
        self
    }

    /// How long a delivery that another request is processing right now
    /// may wait for it to settle (default 4 s, see
    /// [`DEFAULT_IN_FLIGHT_WAIT`]); `Duration::ZERO` answers 409 at once.
    ///
    /// The store is asked again with backoff (25 ms doubling to 200 ms).
    /// If the holder answers 2xx, this copy gets 200 (duplicate); if it
    /// fails, or its lease lapses because its replica died, this copy is
    /// processed; if it is still running at the end, 409. Keep the wait
    /// plus your service's own time well under Kendo's 10 s timeout.
    pub fn in_flight_wait(mut self, wait: Duration) -> Self {
        self.in_flight_wait = Some(wait);
        self
    }

    /// How long the whole body may take to arrive (default 10 s, Kendo's
    /// own request timeout); slower requests get 408
    /// ([`Rejection::BodyTimeout`](crate::Rejection::BodyTimeout)).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// How long the first byte of the body may take, from the first read
    /// (default 2 s, see [`DEFAULT_BODY_START_TIMEOUT`]); a request that
    /// sends none gets 408
    /// ([`Rejection::BodyNotStarted`](crate::Rejection::BodyNotStarted)).
    /// Capped by the [read deadline](Self::read_timeout).
    pub fn body_start_timeout(mut self, timeout: Duration) -> Self {
        self.body_start_timeout = Some(timeout);
        self
    }

    /// The slowest average rate, in bytes a second, at which a started body
    /// may arrive (default 1,024, see [`DEFAULT_MIN_BODY_RATE`]); 0 sets no
    /// minimum. Each `bytes_per_second` bytes received give the body one
    /// more second beyond the [start deadline](Self::body_start_timeout);
    /// past that, 408
    /// ([`Rejection::BodyTooSlow`](crate::Rejection::BodyTooSlow)). The
    /// [read deadline](Self::read_timeout) bounds it whatever the rate.
    pub fn min_body_rate(mut self, bytes_per_second: usize) -> Self {
        self.min_body_rate = Some(bytes_per_second);
        self
    }

    /// The de-duplication store (default: a [`MemoryStore`] of 100,000 keys).
    /// Use a shared store when several replicas receive the same endpoint.
    pub fn dedupe_store(mut self, store: impl DedupeStore) -> Self {
        let store = Arc::new(store);
        let any: Arc<dyn Any + Send + Sync> = store.clone();
        self.memory = any.downcast::<MemoryStore>().ok();
        self.store = Some(store);
        self
    }

    /// Capacity of the default [`MemoryStore`] (default 100,000 keys); not
    /// allowed together with [`dedupe_store`](Self::dedupe_store).
    pub fn dedupe_capacity(mut self, keys: usize) -> Self {
        self.capacity = Some(keys);
        self
    }

    /// Which id de-duplicates deliveries (default: the delivery id; see
    /// [`DedupeKey`] for the trade-off).
    pub fn dedupe_key(mut self, key: DedupeKey) -> Self {
        self.dedupe_key = key;
        self
    }

    /// Rejects deliveries whose `created_at` is further than `tolerance` from
    /// now (default: off). Kendo's retries span ~7 s plus timeouts, so keep
    /// it at minutes, not seconds; clocks drift.
    pub fn replay_tolerance(mut self, tolerance: Duration) -> Self {
        self.replay_tolerance = Some(tolerance);
        self
    }

    /// The clock used by the replay window (default: [`SystemTime::now`]).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// What to do when the de-duplication store fails (default:
    /// [`StoreErrorPolicy::FailOpen`]).
    pub fn store_error_policy(mut self, policy: StoreErrorPolicy) -> Self {
        self.store_error_policy = policy;
        self
    }

    /// Called once for every request, whatever happened to it (accepted
    /// with the inner status and latency, inner failure, rejection,
    /// duplicate), and once more for each de-duplication store failure,
    /// under either policy. See [`Outcome`](crate::Outcome) and
    /// [`Report`](crate::Report); for delivery logs and metrics (the
    /// `metrics` feature records the same outcomes by itself). Keep it
    /// fast: it runs on the request path.
    pub fn on_outcome(mut self, hook: impl Fn(&Report<'_>) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no secret was given, a secret is empty, the
    /// body limit, read timeout or capacity is zero, or the body budget
    /// cannot hold one body of the limit.
    pub fn build(self) -> Result<KendoWebhookLayer, BuildError> {
        let verifier = Verifier::new(self.secrets)?;
        #[cfg(feature = "metrics")]
        crate::metrics::describe_metrics();
        let body_limit = self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit == 0 {
            return Err(BuildError::ZeroBodyLimit);
        }
        let body_budget = self.body_budget.unwrap_or(DEFAULT_BODY_BUDGET);
        // Large bodies may use seven eighths of the budget; small ones all.
        let usable = if body_limit <= SMALL_BODY {
            body_budget
        } else {
            body_budget - body_budget / 8
        };
        if usable < body_limit {
            return Err(BuildError::BodyBudgetBelowLimit {
                budget: body_budget,
                body_limit,
            });
        }
        let read_timeout = self.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        if read_timeout.is_zero() {
            return Err(BuildError::ZeroReadTimeout);
        }
        let (store, memory) = match (self.store, self.capacity) {
            (Some(_), Some(_)) => return Err(BuildError::CapacityWithCustomStore),
            (Some(store), None) => (store, self.memory),
            (None, Some(0)) => return Err(BuildError::ZeroCapacity),
            (None, capacity) => {
                let memory = Arc::new(MemoryStore::new(
                    capacity.unwrap_or(MemoryStore::DEFAULT_CAPACITY),
                ));
                (memory.clone() as Arc<dyn DedupeStore>, Some(memory))
            }
        };
        Ok(KendoWebhookLayer {
            config: Arc::new(Config {
                verifier: ArcSwap::from_pointee(verifier),
                body_limit,
                body_budget: BodyBudget::new(body_budget),
                read_deadlines: ReadDeadlines {
                    start: self
                        .body_start_timeout
                        .unwrap_or(DEFAULT_BODY_START_TIMEOUT),
                    min_rate: self.min_body_rate.unwrap_or(DEFAULT_MIN_BODY_RATE),
                    total: read_timeout,
                },
                in_flight_wait: self.in_flight_wait.unwrap_or(DEFAULT_IN_FLIGHT_WAIT),
                store,
                memory,
                dedupe_key: self.dedupe_key,
                replay_tolerance: self.replay_tolerance,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
                store_error_policy: self.store_error_policy,
                on_outcome: self.on_outcome,
            }),
        })
    }
}

impl fmt::Debug for KendoWebhookLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KendoWebhookLayerBuilder")
            .field("secrets", &self.secrets)
            .field("body_limit", &self.body_limit)
            .field("read_timeout", &self.read_timeout)
            .field("body_start_timeout", &self.body_start_timeout)
            .field("min_body_rate", &self.min_body_rate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misconfiguration_is_a_build_error() {
        assert_eq!(
            KendoWebhookLayer::builder().build().unwrap_err(),
            BuildError::NoSecret
        );
        assert_eq!(
            KendoWebhookLayer::new("").unwrap_err(),
            BuildError::EmptySecret { position: 1 }
        );
        let with_secret = || KendoWebhookLayer::builder().secret("s");
        assert_eq!(
            with_secret().body_limit(0).build().unwrap_err(),
            BuildError::ZeroBodyLimit
        );
        assert_eq!(
            with_secret()
                .read_timeout(Duration::ZERO)
                .build()
                .unwrap_err(),
            BuildError::ZeroReadTimeout
        );
        assert_eq!(
            with_secret().dedupe_capacity(0).build().unwrap_err(),
            BuildError::ZeroCapacity
        );
        assert_eq!(
            with_secret().body_budget(0).build().unwrap_err(),
            BuildError::BodyBudgetBelowLimit {
                budget: 0,
                body_limit: DEFAULT_BODY_LIMIT
            }
        );
    }

    #[test]
    fn the_budget_must_hold_one_body_of_the_limit() {
        let with_secret = || KendoWebhookLayer::builder().secret("s");
        // Small limits may use the whole budget, larger ones seven eighths.
        assert!(with_secret()
            .body_limit(SMALL_BODY)
            .body_budget(SMALL_BODY)
            .build()
            .is_ok());
        assert!(with_secret()
            .body_limit(SMALL_BODY)
            .body_budget(SMALL_BODY - 1)
            .build()
            .is_err());
        assert!(with_secret()
            .body_limit(70_000)
            .body_budget(80_000)
            .build()
            .is_ok());
        assert_eq!(
            with_secret()
                .body_limit(70_001)
                .body_budget(80_000)
                .build()
                .unwrap_err(),
            BuildError::BodyBudgetBelowLimit {
                budget: 80_000,
                body_limit: 70_001
            }
        );
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let builder = KendoWebhookLayer::builder().secret("hunter2-secret");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let layer = builder.build().unwrap();
        assert!(!format!("{layer:?}").contains("hunter2"));
    }
}
