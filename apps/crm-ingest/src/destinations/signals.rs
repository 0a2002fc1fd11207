//! How the tasks of the forwarder and of the watched alerts are told:
//! woken when rows were stored, and ended at shutdown. Apart, so both
//! import it and neither imports the other.

use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// Whether the tasks should end: stop was asked, or the forwarder was
/// dropped without `Forwarder::shutdown` (a closed channel would otherwise
/// wake every `select!` at once, forever).
pub(crate) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Wakes the lanes when rows were stored; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Every idle lane looks for due rows now.
    pub fn wake(&self) {
        self.0.notify_waiters();
    }

    /// Completes at the next [`Self::wake`]; an idle lane waits on it.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }
}
