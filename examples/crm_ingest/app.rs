//! The app: routes, the webhook layer's wiring, and start/shutdown of the
//! server and its background tasks. `main.rs` and `tests/crm_ingest.rs`
//! both include this module (and, through it, its siblings).

#[path = "config.rs"]
pub(crate) mod config;
#[path = "dashboard.rs"]
pub(crate) mod dashboard;
#[path = "storage.rs"]
pub(crate) mod storage;
#[path = "worker.rs"]
pub(crate) mod worker;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kendo_webhooks::{BuildError, DedupeKey, Delivery, KendoWebhookLayer, Secret};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use self::config::AppConfig;
use self::storage::{now_ms, Enqueued, LogEntry, Outcome, Storage, StorageError};

/// Where Kendo delivers.
pub(crate) const WEBHOOK_PATH: &str = "/webhooks/kendo";
/// Delivery-log entries queued between the `on_reject` hook and the log
/// writer; beyond this, entries are dropped (and counted) rather than
/// slowing requests down.
const LOG_QUEUE: usize = 4096;
/// How long shutdown waits for in-flight requests (Kendo gives up on a
/// request after about 10 s, so anything still open after this is stuck).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Shared by every handler.
#[derive(Clone)]
struct AppState {
    storage: Storage,
    wake_worker: Arc<Notify>,
    log: LogQueue,
}

/// The sending end of the delivery-log queue; never blocks.
#[derive(Clone)]
struct LogQueue {
    tx: mpsc::Sender<LogEntry>,
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    fn push(&self, entry: LogEntry) {
        if self.tx.try_send(entry).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Warn on the 1st, 2nd, 4th, 8th... drop, not on every one of a flood.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped_total = dropped,
                    "delivery log is behind (or shutting down): entry dropped"
                );
            }
        }
    }
}

/// The app's router: the webhook behind `layer`, the JSON API, health and
/// the dashboard.
fn router(state: AppState, layer: KendoWebhookLayer) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive).layer(layer))
        .route("/api/calls", get(api_calls))
        .route("/api/trainings", get(api_trainings))
        .route("/api/deliveries", get(api_deliveries))
        .route("/healthz", get(healthz))
        .route("/", get(dashboard_page))
        .with_state(state)
}

/// The layer: both secrets, de-duplication on the signed event id, and
/// every rejection (and duplicate) sent to the delivery log.
fn layer(config: &mut AppConfig, log: LogQueue) -> Result<KendoWebhookLayer, BuildError> {
    let mut builder = KendoWebhookLayer::builder()
        .secret(Secret::new(&config.secret).with_label("current"))
        // The event id is signed and stable across Kendo's retries, and the
        // inbox is keyed on it too; the delivery id header is not signed.
        .dedupe_key(DedupeKey::EventId)
        .on_reject(move |rejected| log.push(LogEntry::from_rejected(rejected, now_ms())));
    if let Some(previous) = &config.previous_secret {
        builder = builder.secret(Secret::new(previous).with_label("previous"));
    }
    if let Some(store) = config.dedupe_store.take() {
        builder = builder.dedupe_store(store);
    }
    builder.build()
}

/// `POST /webhooks/kendo`, behind the layer: the delivery is verified and
/// new to the layer's de-duplication. Make it durable, then answer.
async fn receive(
    State(state): State<AppState>,
    Extension(delivery): Extension<Delivery>,
) -> Response {
    let received_ms = now_ms();
    match state.storage.enqueue(delivery.clone(), received_ms).await {
        Ok(Enqueued::New) => {
            state.wake_worker.notify_one();
            tracing::info!(
                delivery_id = delivery.delivery_id(),
                event_id = delivery.event_id(),
                event = delivery.event_name(),
                test = delivery.is_test(),
                secret = delivery.secret_label().unwrap_or("-"),
                "delivery accepted into the inbox"
            );
            (StatusCode::OK, "accepted\n").into_response()
        }
        Ok(Enqueued::AlreadyInInbox) => {
            tracing::info!(
                delivery_id = delivery.delivery_id(),
                event_id = delivery.event_id(),
                "duplicate: event already in the inbox"
            );
            (
                StatusCode::OK,
                "duplicate: this event is already in the inbox\n",
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(
                %error,
                delivery_id = delivery.delivery_id(),
                event_id = delivery.event_id(),
                "answering 503 so that Kendo retries"
            );
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let entry = LogEntry::handled(
                &delivery,
                Outcome::Rejected,
                Some("inbox_unavailable"),
                status.as_u16(),
                received_ms,
            );
            state.log.push(entry);
            (status, "the inbox is unavailable; retry later\n").into_response()
        }
    }
}

/// A database error answered as 503 with a JSON body saying what failed.
struct ApiError(StorageError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "API request failed");
        let body = serde_json::json!({ "error": self.0.to_string() });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        Self(error)
    }
}

/// `GET /api/calls`: every call, newest first.
async fn api_calls(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.storage.calls(None).await?).into_response())
}

/// `GET /api/trainings`: every training, newest first.
async fn api_trainings(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.storage.trainings(None).await?).into_response())
}

/// `GET /api/deliveries`: the whole retained delivery log, newest first.
async fn api_deliveries(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.storage.deliveries(None).await?).into_response())
}

/// `GET /healthz`: 200 with table sizes when the database answers, else 503.
async fn healthz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.storage.counts().await?;
    let body = serde_json::json!({
        "status": "ok",
        "counts": counts,
        "droppedLogEntries": state.log.dropped.load(Ordering::Relaxed),
    });
    Ok(Json(body).into_response())
}

/// `GET /`: the dashboard.
async fn dashboard_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let storage = &state.storage;
    let page = dashboard::Page {
        counts: storage.counts().await?,
        calls: storage.calls(Some(dashboard::RECENT)).await?,
        trainings: storage.trainings(Some(dashboard::RECENT)).await?,
        deliveries: storage.deliveries(Some(2 * dashboard::RECENT)).await?,
        dropped_log_entries: state.log.dropped.load(Ordering::Relaxed),
    };
    Ok(Html(dashboard::render(&page)).into_response())
}

/// The app could not start, or stopped with an error.
#[derive(Debug)]
pub(crate) enum AppError {
    /// Opening or migrating the database failed.
    Storage(StorageError),
    /// The webhook layer's configuration was refused.
    Layer(BuildError),
    /// Listening on the address failed.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The server stopped with an I/O error.
    Serve(std::io::Error),
    /// A background task panicked.
    Task(&'static str, tokio::task::JoinError),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(error) => error.fmt(f),
            Self::Layer(error) => {
                write!(f, "the webhook layer's configuration was refused: {error}")
            }
            Self::Bind { addr, error } => write!(
                f,
                "could not listen on {addr}: {error} (set CRM_ADDR to a free IP:PORT)"
            ),
            Self::Serve(error) => write!(f, "the HTTP server stopped: {error}"),
            Self::Task(name, error) => write!(f, "the {name} task failed: {error}"),
        }
    }
}

impl std::error::Error for AppError {}

/// A started app: the server and its background tasks.
pub(crate) struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    worker: Option<JoinHandle<()>>,
    log_stop: oneshot::Sender<()>,
    log_writer: JoinHandle<()>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Opens and migrates the database, binds `config.addr`, and starts the
/// server, the projector (unless `config.run_worker` is false) and the
/// delivery-log writer. Returns once the server accepts connections.
pub(crate) async fn start(mut config: AppConfig) -> Result<Running, AppError> {
    let storage = Storage::open(config.db_path.clone(), config.delivery_log_keep)
        .await
        .map_err(AppError::Storage)?;
    let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
    let log = LogQueue {
        tx: log_tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let layer = layer(&mut config, log.clone()).map_err(AppError::Layer)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|error| AppError::Bind {
            addr: config.addr,
            error,
        })?;
    let addr = listener.local_addr().map_err(|error| AppError::Bind {
        addr: config.addr,
        error,
    })?;

    let (stop, stop_rx) = watch::channel(false);
    let wake_worker = Arc::new(Notify::new());
    let worker = config.run_worker.then(|| {
        tokio::spawn(worker::project_inbox(
            storage.clone(),
            Arc::clone(&wake_worker),
            stop_rx.clone(),
        ))
    });
    let (log_stop, log_stop_rx) = oneshot::channel();
    let log_writer = tokio::spawn(worker::write_delivery_log(
        storage.clone(),
        log_rx,
        log_stop_rx,
    ));

    let state = AppState {
        storage,
        wake_worker,
        log,
    };
    let app = router(state, layer);
    let mut server_stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Stop asked, or the handle dropped: shut down either way.
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        stop,
        server,
        worker,
        log_stop,
        log_writer,
    })
}

impl Running {
    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `signal` completes, then shuts down gracefully; returns
    /// early with an error if the server fails on its own.
    pub(crate) async fn run_until(
        mut self,
        signal: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        tokio::select! {
            () = signal => self.shutdown().await,
            served = &mut self.server => {
                // The server is gone: stop the rest, then report why.
                let _ = self.stop.send(true);
                let rest = finish_background(self.worker, self.log_stop, self.log_writer).await;
                match served {
                    Ok(Ok(())) => rest,
                    Ok(Err(error)) => Err(AppError::Serve(error)),
                    Err(error) => Err(AppError::Task("server", error)),
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting connections and finish in-flight
    /// requests; let the projector finish its current row; write the queued
    /// delivery-log entries.
    pub(crate) async fn shutdown(self) -> Result<(), AppError> {
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = self.stop.send(true);
        let mut server = self.server;
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!(
                    grace = ?SHUTDOWN_GRACE,
                    "requests still open after the grace period; closing their connections"
                );
                server.abort();
                match server.await {
                    Err(error) if error.is_cancelled() => Ok(Ok(())),
                    other => other,
                }
            }
        };
        let rest = finish_background(self.worker, self.log_stop, self.log_writer).await;
        match served {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(AppError::Serve(error)),
            Err(error) => return Err(AppError::Task("server", error)),
        }
        rest?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for the projector (already told to stop) and lets the log writer
/// drain its queue.
async fn finish_background(
    worker: Option<JoinHandle<()>>,
    log_stop: oneshot::Sender<()>,
    log_writer: JoinHandle<()>,
) -> Result<(), AppError> {
    let worker = match worker {
        Some(worker) => worker.await.map_err(|e| AppError::Task("projector", e)),
        None => Ok(()),
    };
    let _ = log_stop.send(());
    let writer = log_writer
        .await
        .map_err(|e| AppError::Task("delivery-log writer", e));
    worker.and(writer)
}
