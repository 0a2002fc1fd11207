//! Which targets take each projected event: the storage asks the
//! [`Selector`] for the outbox rows it writes in the projection's
//! transaction (through [`OutboxPicker`], so the storage never imports
//! the destinations).

use std::sync::Arc;

use kendo_webhooks::Delivery;

use super::alerts;
use super::settings::Settings;
use crate::storage::{OutboxPicker, OutboxRow};

/// Picks, for each projected event, the outbox rows of the targets that
/// take it.
#[derive(Debug, Clone)]
pub struct Selector {
    settings: Arc<Settings>,
    console: Option<String>,
}

impl Selector {
    /// The selector of `settings`; `console` is the app's public origin
    /// (`CRM_PUBLIC_URL`), for the alerts' links.
    pub fn new(settings: Arc<Settings>, console: Option<String>) -> Self {
        Self { settings, console }
    }
}

impl OutboxPicker for Selector {
    /// The rows `delivery` adds: one per destination that selects it, one
    /// per alert that fires.
    fn rows(&self, delivery: &Delivery) -> Vec<OutboxRow> {
        let row = |target: &str, body: Vec<u8>| OutboxRow {
            target: target.to_owned(),
            event_id: delivery.event_id().to_owned(),
            event: delivery.event_name().to_owned(),
            body,
        };
        let destinations = self
            .settings
            .destinations
            .iter()
            .filter(|d| d.selects(delivery.event_name(), delivery.is_test()))
            .map(|d| row(&d.name, delivery.body().to_vec()));
        let alerts = self.settings.alerts.iter().filter_map(|a| {
            alerts::message(a.rule, delivery, self.console.as_deref()).map(|m| row(&a.name, m))
        });
        destinations.chain(alerts).collect()
    }
}
