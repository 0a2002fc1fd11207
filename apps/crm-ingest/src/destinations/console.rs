//! What the destinations' console (`/destinations`) works with, held in
//! the app's state.

use std::sync::Arc;

use super::outbox::Outbox;
use super::settings::Settings;
use super::signals::Waker;

/// What the console needs: the outbox, what the file configures, and the
/// lanes' waker (a replay is sent at once).
#[derive(Debug, Clone)]
pub struct Console {
    /// The outbox.
    pub outbox: Outbox,
    /// The configuration (empty without `CRM_CONFIG`).
    pub settings: Arc<Settings>,
    /// Wakes the lanes.
    pub waker: Waker,
}
