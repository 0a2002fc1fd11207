//! The routes. Open: `POST /webhooks/kendo` (the layer in front of the
//! library's inbox: verify, de-duplicate, commit, 2xx) and `GET /healthz`.
//! Behind the admin token: the dashboard `/`, the JSON API `/api/*` and
//! `/metrics`.
//!
//! Lists are pages, newest first: `?limit=` (default 100, at most 1,000)
//! and `?cursor=` from the `Link: <…>; rel="next"` header (RFC 8288) of
//! the previous page; the body is a JSON array. `/api/calls` and
//! `/api/trainings` take `?test=exclude|only|include` (default `exclude`:
//! test deliveries never count as real ones); `/api/deliveries` takes
//! `?outcome=` and `?reason=`. Search, the other filters and CSV export
//! are [`crate::search`] and [`crate::export`]; one delivery's page is
//! [`crate::detail`]; the operator's actions are [`crate::actions`].

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, post_service};
use axum::{Json, Router};
use kendo_webhooks::{Delivery, KendoWebhookLayer};
use kendo_webhooks_inbox::RowState;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::auth::AdminToken;
use crate::dashboard;
use crate::paging;
use crate::state::AppState;
use crate::storage::{format_ms, Page, Projection, Storage, StorageError};

/// Where Kendo delivers.
pub const WEBHOOK_PATH: &str = "/webhooks/kendo";

/// The app's router.
pub fn router(state: AppState, layer: KendoWebhookLayer, token: &AdminToken) -> Router {
    let admin = Router::new()
        .route("/", get(dashboard_page))
        .route("/api/calls", get(crate::search::api_calls))
        .route("/api/trainings", get(crate::search::api_trainings))
        .route("/api/deliveries", get(crate::search::api_deliveries))
        .route(
            "/api/deliveries/{delivery_id}",
            get(crate::detail::api_delivery),
        )
        .route(
            "/deliveries/{delivery_id}",
            get(crate::detail::delivery_page),
        )
        .route("/api/rejections", get(api_rejections))
        .route("/api/status", get(api_status))
        .route("/api/inbox", get(api_inbox))
        .route("/api/inbox/requeue", post(crate::actions::requeue_all))
        .route(
            "/api/inbox/{event_id}/requeue",
            post(crate::actions::requeue),
        )
        .route(
            "/api/inbox/{event_id}/replay",
            post(crate::actions::replay_done),
        )
        .route(
            "/api/deliveries/{delivery_id}/replay",
            post(crate::actions::replay_logged),
        )
        .route("/metrics", get(metrics))
        .merge(crate::destinations::api::routes())
        .route("/agents/{agent}", get(crate::agent::agent_page))
        .route("/assets/console.js", get(crate::assets::console_js))
        .route_layer(token.layer())
        // Outside the token check: a forged cross-site request is refused
        // before its credentials are looked at, and 401s carry the headers.
        .route_layer(axum::middleware::from_fn_with_state(
            state.own_origin.clone(),
            crate::same_origin::guard,
        ));
    Router::new()
        .route(WEBHOOK_PATH, post_service(state.inbox.clone()).layer(layer))
        .route("/healthz", get(healthz))
        .merge(admin)
        .with_state(state)
}

/// Rows the inbox worker claims and projects at once (one transaction).
pub const WORKER_BATCH: usize = 2048;

/// The inbox worker's handler: projects a claimed batch into `calls` and
/// `trainings` in one transaction, idempotent on the event id; one result
/// per delivery.
pub async fn project_batch(
    storage: Storage,
    deliveries: Vec<Delivery>,
) -> Vec<Result<(), StorageError>> {
    let started = Instant::now();
    let results = storage.project_batch(&deliveries).await;
    metrics::histogram!("crm_projection_duration_seconds").record(started.elapsed().as_secs_f64());
    deliveries
        .iter()
        .zip(results)
        .map(|(delivery, result)| match result? {
            Projection::Ignored => {
                tracing::info!(
                    event_id = delivery.event_id(),
                    event = delivery.event_name(),
                    "no CRM table for this event: kept in the inbox, and sent on to the destinations that select it (CRM_CONFIG)"
                );
                Ok(())
            }
            _ => Ok(()),
        })
        .collect()
}

/// The query string of a list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    state: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<Page, ApiError> {
        paging::page(self.limit.as_deref(), self.cursor.as_deref())
    }
}

/// `GET /api/rejections`: unverified rejections per minute and reason,
/// newest first (`?limit=`, no cursor).
async fn api_rejections(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = query.page()?;
    Ok(Json(state.storage.rejections(page.limit).await?).into_response())
}

/// An inbox row as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InboxRow {
    event_id: String,
    delivery_id: String,
    event: String,
    state: String,
    attempts: u32,
    last_error: Option<String>,
    received_at: String,
}

/// `GET /api/inbox?state=dead|failed|pending|leased`: events that arrived
/// but were not (yet) processed; default `dead`.
async fn api_inbox(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = query.page()?;
    let row_state = match query.state.as_deref().unwrap_or("dead") {
        "dead" => RowState::Dead,
        "failed" => RowState::Failed,
        "pending" => RowState::Pending,
        "leased" => RowState::Leased,
        other => {
            return Err(ApiError::bad_request(format!(
                "state={other:?}: expected dead, failed, pending or leased"
            )))
        }
    };
    let rows: Vec<InboxRow> = state
        .inbox
        .list(row_state, page.limit)
        .await?
        .into_iter()
        .map(|row| InboxRow {
            received_at: format_ms(
                row.received_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0)),
            ),
            event_id: row.event_id,
            delivery_id: row.delivery_id,
            event: row.event_name,
            state: row.state.to_string(),
            attempts: row.attempts,
            last_error: row.last_error,
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// `GET /healthz`: whether this node can durably accept a delivery now,
/// answered from memory (no database access, no business data): 200
/// `{"status":"ok"}`, or 503 `{"status":"unavailable"}` with `Retry-After`
/// when the newest commit or write probe failed (the probe also notices a
/// SQLite file removed or replaced on disk).
async fn healthz(State(state): State<AppState>) -> Response {
    if state.inbox.health().healthy {
        (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "status": "ok" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::RETRY_AFTER, "1"),
            ],
            Json(serde_json::json!({ "status": "unavailable" })),
        )
            .into_response()
    }
}

/// The query string of `/api/status`.
#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    /// `1`: add the CRM tables' sizes (`counts`), which counts their rows.
    tables: Option<String>,
}

/// `GET /api/status` (admin): health with its reason, the inbox's rows per
/// state (kept counts, not a scan), the worker's recent rows/s and the
/// delivery log's queue; with `?tables=1` also the CRM tables' sizes
/// (`counts`: those are counted, so not for a tight polling loop).
async fn api_status(
    State(state): State<AppState>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let health = state.inbox.health();
    let inbox = state.inbox.counts().await?;
    let tables = match query.tables.as_deref() {
        Some("1") => Some(state.storage.counts().await?),
        None | Some("0") => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "tables={other:?}: expected 1 or 0"
            )))
        }
    };
    let iso = |t: std::time::SystemTime| {
        format_ms(
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0)),
        )
    };
    let body = serde_json::json!({
        "status": if health.healthy { "ok" } else { "unavailable" },
        "lastOk": health.last_ok.map(iso),
        "lastFailure": health.last_failure.as_ref().map(|(at, error)| serde_json::json!({
            "at": iso(*at),
            "error": error.to_string(),
        })),
        "inbox": {
            "backlog": inbox.backlog(),
            "pending": inbox.pending,
            "leased": inbox.leased,
            "failed": inbox.failed,
            "dead": inbox.dead,
            "done": inbox.done,
        },
        "worker": {
            "rowsPerSecond": state.backlog.worker_rate(),
            "doneTotal": health.done_total,
        },
        "deliveryLog": {
            "queued": state.log.queued(),
            "droppedUnverified": state.log.dropped(),
        },
        "counts": tables,
    });
    Ok(Json(body).into_response())
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.prometheus else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "another metrics recorder is installed in this process",
        ));
    };
    let inbox = state.inbox.counts().await?;
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!("crm_inbox_backlog").set(inbox.backlog() as f64);
        metrics::gauge!("crm_inbox_dead").set(inbox.dead as f64);
        metrics::gauge!("crm_inbox_worker_rows_per_second").set(state.backlog.worker_rate());
        metrics::gauge!("crm_inbox_healthy").set(if state.inbox.health().healthy {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("crm_delivery_log_queued").set(state.log.queued() as f64);
    }
    metrics::gauge!("crm_delivery_log_dropped_total").set(state.log.dropped() as f64);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

/// The dashboard's query string.
#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    /// The search box: an id, or its beginning.
    q: Option<String>,
    /// The delivery log shows only this outcome.
    outcome: Option<String>,
}

/// `GET /`: the dashboard (`?q=` searches by id, `?outcome=` filters the
/// delivery log).
async fn dashboard_page(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ApiError> {
    let log_filter = match query.outcome.as_deref() {
        None | Some("") => None,
        Some(value) => Some(value.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "outcome={value:?}: expected accepted, duplicate, rejected or failed"
            ))
        })?),
    };
    let render = || async {
        let data = dashboard::load_in(
            &state.time_zone,
            &state.storage,
            &state.inbox,
            &state.backlog,
            query.q.as_deref(),
            log_filter,
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        Ok::<_, ApiError>(crate::views::render(&data))
    };
    let page = state
        .dashboards
        .page(uri.query().unwrap_or(""), render)
        .await?;
    Ok(Html(page.to_string()).into_response())
}
