//! The destinations' outbox rows a projection adds in its own transaction
//! (issue 20): their shape, and who picks them. Here, under the storage,
//! so the storage writes them without knowing the destinations, and the
//! destinations (which pick and send them) depend on the storage alone.

use kendo_webhooks::Delivery;

/// One target's work for one event, to be added to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// The destination's or alert's name.
    pub target: String,
    /// The Kendo event id.
    pub event_id: String,
    /// The Kendo event name.
    pub event: String,
    /// What is sent: the raw Kendo body, or an alert's message.
    pub body: Vec<u8>,
}

/// Picks, for each projected event, the outbox rows of the targets that
/// take it; [`super::Storage::with_outbox`] writes them in the
/// projection's transaction.
pub trait OutboxPicker: Send + Sync {
    /// The rows `delivery` adds (none when no target takes it).
    fn rows(&self, delivery: &Delivery) -> Vec<OutboxRow>;
}
