//! Start and stop: the database (SQLite or Postgres), the library's inbox
//! and its worker, the webhook layer with its `on_outcome` hook, the
//! delivery-log writer and the server.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kendo_webhooks::{BuildError, DedupeKey, Delivery, KendoWebhookLayer, Secret};
use kendo_webhooks_inbox::{Inbox, InboxError, WorkerHandle};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::AdminToken;
use crate::backlog::BacklogHistory;
use crate::config::{AppConfig, Database};
use crate::delivery_log::{DeliveryLog, Writer};
use crate::destinations::{Console, Forwarder, Outbox, Selector, Waker, Watched};
use crate::pg_error::Chain;
use crate::routes;
use crate::server;
use crate::state::AppState;
use crate::storage::{Storage, StorageError};
use crate::warnings::{Warnings, DEAD_ROWS_EVERY};

/// How long shutdown waits for in-flight requests (Kendo gives up on a
/// request after about 10 s, so anything still open after this is stuck).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Histogram buckets, in seconds, for latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The app could not start.
#[derive(Debug)]
pub enum AppError {
    /// Opening or migrating the CRM's tables failed.
    Storage(StorageError),
    /// Opening the inbox failed.
    Inbox(InboxError),
    /// The destinations' forwarder could not start.
    Destinations(String),
    /// The webhook layer's configuration was refused.
    Layer(BuildError),
    /// Listening on the address failed.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(error) => Chain(error).fmt(f),
            Self::Inbox(error) => write!(f, "could not open the inbox: {error}"),
            Self::Destinations(error) => {
                write!(f, "could not start forwarding to destinations: {error}")
            }
            Self::Layer(error) => {
                write!(f, "the webhook layer's configuration was refused: {error}")
            }
            Self::Bind { addr, error } => write!(
                f,
                "could not listen on {addr}: {error} (set CRM_ADDR to a free IP:PORT)"
            ),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage(error) => Some(error),
            Self::Inbox(error) => Some(error),
            Self::Destinations(_) => None,
            Self::Layer(error) => Some(error),
            Self::Bind { error, .. } => Some(error),
        }
    }
}

/// Creates the SQLite file readable by its owner only (`0600`) when it does
/// not exist yet: it holds every raw body. SQLite gives its `-wal` and
/// `-shm` files the database file's permissions. An existing file is left
/// as it is, with a warning when others may read it.
fn create_private_sqlite_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => tracing::info!(path = %path.display(), "SQLite file created, mode 0600"),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode());
                if let Ok(mode) = mode.map(|mode| mode & 0o777) {
                    if mode & 0o077 != 0 {
                        tracing::warn!(
                            path = %path.display(),
                            mode = format_args!("{mode:04o}"),
                            "the SQLite file holds every raw body and others may read it; \
                             chmod 600 it (and its -wal and -shm files)"
                        );
                    }
                }
            }
            // Opening the database reports it (a missing directory, say).
            Err(_) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A started app.
pub struct Running {
    addr: SocketAddr,
    admin_token: String,
    token_generated: bool,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: Option<WorkerHandle>,
    log_writer: Writer,
    sampler: JoinHandle<()>,
    dead_rows: JoinHandle<()>,
    forwarder: Option<Forwarder>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The process's Prometheus recorder, installed on first use; `None` when
/// another recorder was installed first.
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("prometheus-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The layer: both secrets, de-duplication on the signed event id, and
/// every outcome reported to the delivery log.
fn layer(
    config: &mut AppConfig,
    log: DeliveryLog,
    warnings: Arc<Warnings>,
) -> Result<KendoWebhookLayer, BuildError> {
    let mut builder = KendoWebhookLayer::builder()
        .secret(Secret::new(&config.secret).with_label("current"))
        // The event id is signed and stable across Kendo's retries, and the
        // inbox is keyed on it too; the delivery id header is not signed.
        .dedupe_key(DedupeKey::EventId)
        .body_start_timeout(config.limits.body_start_timeout)
        .min_body_rate(config.limits.min_body_rate)
        .on_outcome(move |report| {
            warnings.outcome(report);
            log.record(report);
        });
    if let Some(previous) = &config.previous_secret {
        builder = builder.secret(Secret::new(previous).with_label("previous"));
    }
    if let Some(store) = config.dedupe_store.take() {
        builder = builder.dedupe_store(store);
    }
    builder.build()
}

/// Opens the database, the inbox and the CRM's tables, binds
/// `config.addr`, and starts the server, the inbox worker (unless
/// `config.run_worker` is false) and the delivery-log writer. Returns once
/// the server accepts connections.
pub async fn start(mut config: AppConfig) -> Result<Running, AppError> {
    if let Database::Sqlite(path) = &config.database {
        create_private_sqlite_file(path);
    }
    let storage = Storage::open(&config.database)
        .await
        .map_err(AppError::Storage)?;
    // Destinations and alerts (CRM_CONFIG): their outbox rows are added in
    // the projection's transaction; a lane per target sends them.
    let outbox = Outbox::new(&storage);
    let destinations = Arc::new(std::mem::take(&mut config.destinations));
    let storage = if destinations.is_empty() {
        storage
    } else {
        storage.with_outbox(Selector::new(
            Arc::clone(&destinations),
            config.public_origin.clone(),
        ))
    };
    let waker = Waker::default();
    let inbox = match &config.database {
        Database::Sqlite(path) => Inbox::open_sqlite(path).await,
        Database::Postgres(url) => Inbox::connect_postgres(url).await,
    }
    .map_err(AppError::Inbox)?;
    let (log, log_writer) = DeliveryLog::start(
        storage.clone(),
        config.log_keep,
        config.rejections_keep_minutes,
    );
    let warnings = Arc::new(Warnings::default());
    let layer = layer(&mut config, log.clone(), Arc::clone(&warnings)).map_err(AppError::Layer)?;
    let (admin_token, token_generated) = match config.admin_token.take() {
        Some(token) => (token, false),
        None => (AdminToken::generate(), true),
    };
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

    // The recorder first: the forwarder describes its metrics at start.
    // The forwarder before the worker: if it cannot start, nothing is left
    // running.
    let prometheus = prometheus();
    let forwarder = if destinations.is_empty() {
        None
    } else {
        Some(
            Forwarder::spawn(
                &destinations,
                outbox.clone(),
                waker.clone(),
                config.inbox_retention,
                Watched {
                    storage: storage.clone(),
                    inbox: inbox.clone(),
                    console: config.public_origin.clone(),
                },
            )
            .map_err(AppError::Destinations)?,
        )
    };
    let worker = config.run_worker.then(|| {
        let storage = storage.clone();
        let warnings = Arc::clone(&warnings);
        let waker = waker.clone();
        inbox
            .batch_worker(move |batch: Vec<Delivery>| {
                let projected = routes::project_batch(storage.clone(), batch.clone());
                let warnings = Arc::clone(&warnings);
                let waker = waker.clone();
                async move {
                    let results = projected.await;
                    // Rows for destinations may have been stored: send now.
                    waker.wake();
                    for (delivery, result) in batch.iter().zip(&results) {
                        if let Err(error) = result {
                            warnings.projection_failed(delivery, error);
                        }
                    }
                    results
                }
            })
            .batch_size(routes::WORKER_BATCH)
            .lease(config.worker_lease)
            .purge_done_after(config.inbox_retention)
            .spawn()
    });
    let dead_rows = warnings.spawn_dead_rows_watch(inbox.clone(), DEAD_ROWS_EVERY);
    let backlog = BacklogHistory::default();
    let sampler = backlog.spawn_sampler(inbox.clone());
    let state = AppState {
        own_origin: crate::same_origin::OwnOrigin(config.public_origin.clone().map(Into::into)),
        storage,
        inbox,
        log,
        prometheus,
        backlog,
        destinations: Console {
            outbox,
            settings: destinations,
            waker,
        },
        time_zone: config.time_zone.clone(),
        dashboards: crate::coalesce::Coalesce::default(),
    };
    let app = routes::router(state, layer, &AdminToken::new(&admin_token));
    let (stop, mut stop_rx) = watch::channel(false);
    let limits = config.limits;
    let server = tokio::spawn(async move {
        let shutdown = async move {
            // Stop asked, or the handle dropped: shut down either way.
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        server::serve(listener, app, limits, shutdown, SHUTDOWN_GRACE).await;
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        admin_token,
        token_generated,
        stop,
        server,
        worker,
        log_writer,
        sampler,
        dead_rows,
        forwarder,
    })
}

impl Running {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token (given, or generated at start).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether the admin token was generated at start.
    pub fn token_generated(&self) -> bool {
        self.token_generated
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Graceful shutdown: stop accepting connections and finish in-flight
    /// requests; let the worker finish its handlers and settle their rows;
    /// write the queued delivery-log entries.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = self.stop.send(true);
        self.sampler.abort();
        self.dead_rows.abort();
        if let Err(error) = self.server.await {
            tracing::warn!(%error, "the server task failed");
        }
        if let Some(worker) = self.worker {
            let report = worker.shutdown().await;
            tracing::info!(?report, "inbox worker stopped");
        }
        if let Some(forwarder) = self.forwarder {
            forwarder.shutdown().await;
            tracing::info!("forwarding to destinations stopped");
        }
        self.log_writer.finish().await;
        tracing::info!("stopped");
    }
}
