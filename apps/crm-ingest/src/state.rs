//! What every handler shares. Below the handlers and the router, so the
//! handlers import it and the router imports the handlers, and no arrow
//! runs back.

use kendo_webhooks_inbox::Inbox;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::backlog::BacklogHistory;
use crate::coalesce::Coalesce;
use crate::delivery_log::DeliveryLog;
use crate::destinations::Console;
use crate::same_origin::OwnOrigin;
use crate::storage::Storage;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The CRM's tables.
    pub storage: Storage,
    /// The app's own origin, for the admin pages' cross-site check.
    pub own_origin: OwnOrigin,
    /// The library's durable inbox (the webhook route's service).
    pub inbox: Inbox,
    /// The delivery log's writer (its queue, for `/api/status`).
    pub log: DeliveryLog,
    /// Renders `/metrics`; `None` when another recorder is installed.
    pub prometheus: Option<PrometheusHandle>,
    /// The inbox's backlog over the last hour, for its chart.
    pub backlog: BacklogHistory,
    /// Destinations and alerts: their outbox and configuration.
    pub destinations: Console,
    /// The console's time zone (`CRM_TIME_ZONE`).
    pub time_zone: jiff::tz::TimeZone,
    /// Dashboard renders, one at a time, shared by the requests waiting.
    pub dashboards: Coalesce,
}
