//! The configuration a [`KendoWebhookLayer`](crate::KendoWebhookLayer) hands
//! to every service it makes: built once by the layer's builder, read by the
//! pipeline (`service.rs`). It lives apart from both, so the layer depends on
//! the service and neither depends back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::body::{BodyBudget, ReadDeadlines};
use crate::dedupe::{DedupeKey, DedupeStore, MemoryStore};
use crate::outcome::Report;
use crate::policy::StoreErrorPolicy;
use crate::signature::{Clock, Verifier};

pub(crate) type OutcomeHook = dyn Fn(&Report<'_>) + Send + Sync;

pub(crate) struct Config {
    /// Swapped atomically by [`KendoWebhookLayer::replace_secrets`].
    pub(crate) verifier: ArcSwap<Verifier>,
    pub(crate) body_limit: usize,
    pub(crate) body_budget: BodyBudget,
    pub(crate) read_deadlines: ReadDeadlines,
    pub(crate) store: Arc<dyn DedupeStore>,
    /// `store` itself when it is a [`MemoryStore`], which the layer then
    /// gives each key's fingerprint, hashed once per request.
    pub(crate) memory: Option<Arc<MemoryStore>>,
    pub(crate) in_flight_wait: Duration,
    pub(crate) dedupe_key: DedupeKey,
    pub(crate) replay_tolerance: Option<Duration>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) store_error_policy: StoreErrorPolicy,
    pub(crate) on_outcome: Option<Arc<OutcomeHook>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KendoWebhookLayer")
            .field("verifier", &self.verifier.load())
            .field("body_limit", &self.body_limit)
            .field("body_budget", &self.body_budget)
            .field("read_deadlines", &self.read_deadlines)
            .field("in_flight_wait", &self.in_flight_wait)
            .field("dedupe_key", &self.dedupe_key)
            .field("replay_tolerance", &self.replay_tolerance)
            .field("store_error_policy", &self.store_error_policy)
            .finish_non_exhaustive()
    }
}
