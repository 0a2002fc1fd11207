//! Kendo events onward (issue 20): durable forwarding to automation
//! endpoints (Zapier, Make, n8n, your own) with Standard Webhooks
//! signatures, and alerts for managers (Slack-compatible incoming
//! webhooks). Configured by the file `CRM_CONFIG` names ([`settings`]);
//! without it, nothing here runs but the console's empty page.
//!
//! The story, in order:
//!
//! 1. The inbox worker projects a batch; in the same transaction the
//!    [`Selector`] adds one [`outbox`] row per target that takes each event
//!    (unique per target and event id: a replay adds nothing).
//! 2. The [`forwarder`] runs a lane per target: lease the oldest due rows,
//!    [`sender`] them ([`signature`] signs), settle each; retries follow
//!    [`backoff`].
//! 3. The console ([`api`], `views/destinations.rs`) shows each target's
//!    state and rows with their attempts, and replays one event or every
//!    dead one.
//!
//! The outbox has a backend per database, one file each: [`sqlite`] and
//! [`postgres`]. User docs: `docs/destinations.md`.

pub mod alerts;
pub mod api;
pub mod backoff;
pub mod forwarder;
pub mod outbox;
pub mod postgres;
pub mod sender;
pub mod settings;
pub mod signature;
pub mod sqlite;

use std::sync::Arc;

use kendo_webhooks::Delivery;

pub use self::forwarder::{Forwarder, Waker, Watched};
pub use self::outbox::{NewRow, Outbox};
pub use self::settings::{Settings, SettingsError, CONFIG_VAR};

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

    /// The rows `delivery` adds: one per destination that selects it, one
    /// per alert that fires.
    pub fn rows(&self, delivery: &Delivery) -> Vec<NewRow> {
        let row = |target: &str, body: Vec<u8>| NewRow {
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

/// Describes the metrics once (Prometheus `# HELP` lines).
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        "crm_destination_deliveries_total",
        "Attempts to send to destinations and alerts, by destination and outcome \
         (delivered, failed: retried later, gone: 410 stopped it, dead: retries given up)"
    );
    metrics::describe_histogram!(
        "crm_destination_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "How long one attempt to a destination took, answer or not"
    );
    metrics::describe_gauge!(
        "crm_destination_pending",
        "Outbox rows of a destination waiting or being retried (refreshed every 15 s)"
    );
    metrics::describe_gauge!(
        "crm_destination_dead",
        "Outbox rows of a destination given up on; replay them from /destinations"
    );
}

/// `text` with everything but unreserved characters percent-encoded (for a
/// query value or a path segment).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
