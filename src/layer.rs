//! [`KendoWebhookLayer`] and its builder: configuration only.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use crate::dedupe::{DedupeKey, DedupeStore, MemoryStore};
use crate::error::BuildError;
use crate::reject::Rejected;
use crate::service::KendoWebhook;
use crate::signature::{Secret, Verifier};

/// Default body limit: 1 MiB, far above any documented Kendo payload.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Default body read deadline: Kendo's own request timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do with a verified delivery when the de-duplication store fails.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreErrorPolicy {
    /// Process the delivery anyway (the default): losing an event is worse
    /// than a rare duplicate, which an idempotent sink absorbs.
    #[default]
    FailOpen,
    /// Answer 503 so Kendo retries later; never risks a duplicate, but
    /// deliveries are lost if the store stays down past Kendo's retries.
    FailClosed,
}

type Clock = dyn Fn() -> SystemTime + Send + Sync;
type RejectHook = dyn Fn(&Rejected) + Send + Sync;

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

pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    pub(crate) body_limit: usize,
    pub(crate) read_timeout: Duration,
    pub(crate) store: Arc<dyn DedupeStore>,
    pub(crate) dedupe_key: DedupeKey,
    pub(crate) replay_tolerance: Option<Duration>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) store_error_policy: StoreErrorPolicy,
    pub(crate) on_reject: Option<Arc<RejectHook>>,
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KendoWebhookLayer")
            .field("verifier", &self.verifier)
            .field("body_limit", &self.body_limit)
            .field("read_timeout", &self.read_timeout)
            .field("dedupe_key", &self.dedupe_key)
            .field("replay_tolerance", &self.replay_tolerance)
            .field("store_error_policy", &self.store_error_policy)
            .finish_non_exhaustive()
    }
}

/// Builder of a [`KendoWebhookLayer`]; see each method for its default.
#[derive(Default)]
#[must_use]
pub struct KendoWebhookLayerBuilder {
    secrets: Vec<Secret>,
    body_limit: Option<usize>,
    read_timeout: Option<Duration>,
    store: Option<Arc<dyn DedupeStore>>,
    capacity: Option<usize>,
    dedupe_key: DedupeKey,
    replay_tolerance: Option<Duration>,
    clock: Option<Arc<Clock>>,
    store_error_policy: StoreErrorPolicy,
    on_reject: Option<Arc<RejectHook>>,
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

    /// Largest body accepted, declared or streamed (default 1 MiB); larger
    /// requests get 413 and never more than this is held in memory.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// How long the whole body may take to arrive (default 10 s, Kendo's
    /// own request timeout); slower requests get 408.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// The de-duplication store (default: a [`MemoryStore`] of 100,000 keys).
    /// Use a shared store when several replicas receive the same endpoint.
    pub fn dedupe_store(mut self, store: impl DedupeStore) -> Self {
        self.store = Some(Arc::new(store));
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

    /// Called for every request the layer answers itself (rejections and
    /// duplicates), for delivery logs and metrics. Keep it fast: it runs on
    /// the request path.
    pub fn on_reject(mut self, hook: impl Fn(&Rejected) + Send + Sync + 'static) -> Self {
        self.on_reject = Some(Arc::new(hook));
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no secret was given, a secret is empty, or the
    /// body limit, read timeout or capacity is zero.
    pub fn build(self) -> Result<KendoWebhookLayer, BuildError> {
        let verifier = Verifier::new(self.secrets)?;
        let body_limit = self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit == 0 {
            return Err(BuildError::ZeroBodyLimit);
        }
        let read_timeout = self.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        if read_timeout.is_zero() {
            return Err(BuildError::ZeroReadTimeout);
        }
        let store = match (self.store, self.capacity) {
            (Some(_), Some(_)) => return Err(BuildError::CapacityWithCustomStore),
            (Some(store), None) => store,
            (None, Some(0)) => return Err(BuildError::ZeroCapacity),
            (None, capacity) => Arc::new(MemoryStore::new(
                capacity.unwrap_or(MemoryStore::DEFAULT_CAPACITY),
            )),
        };
        Ok(KendoWebhookLayer {
            config: Arc::new(Config {
                verifier,
                body_limit,
                read_timeout,
                store,
                dedupe_key: self.dedupe_key,
                replay_tolerance: self.replay_tolerance,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
                store_error_policy: self.store_error_policy,
                on_reject: self.on_reject,
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
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let builder = KendoWebhookLayer::builder().secret("hunter2-secret");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let layer = builder.build().unwrap();
        assert!(!format!("{layer:?}").contains("hunter2"));
    }
}
