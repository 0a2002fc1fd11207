//! Run with: `KENDO_WEBHOOK_SECRET=... cargo run --release --example crm_ingest`
//!
//! A small but real CRM ingest service for Kendo webhooks, following Kendo's
//! best practices: verify every delivery (the `KendoWebhookLayer`), make it
//! durable in an SQLite inbox before answering 200, project it into `calls`
//! and `trainings` in the background, drop duplicates (even across
//! restarts), and keep a bounded delivery log.
//!
//! Environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `KENDO_WEBHOOK_SECRET` | the endpoint's webhook secret (required) |
//! | `KENDO_WEBHOOK_SECRET_PREVIOUS` | the previous secret, during a rotation |
//! | `CRM_ADDR` | address to listen on (default `127.0.0.1:3000`) |
//! | `CRM_DB` | SQLite file, created and migrated on start (default `crm.sqlite3`) |
//! | `KENDO_DEDUPE_REDIS_URL` | share de-duplication between replicas (needs `--features redis`) |
//! | `RUST_LOG` | log filter (default `info`) |
//!
//! Routes: `POST /webhooks/kendo`, `GET /api/calls`, `GET /api/trainings`,
//! `GET /api/deliveries`, `GET /healthz`, `GET /` (dashboard).

mod app;

use std::process::ExitCode;

use app::config::{AppConfig, REDIS_VAR};

/// Exit code for a configuration the app cannot run with.
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut config = match AppConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("crm_ingest: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(code) = dedupe_store(&mut config).await {
        return code;
    }

    println!("crm_ingest: Kendo webhook receiver");
    for line in config.describe() {
        println!("  {line}");
    }
    for name in config.padded_secrets() {
        tracing::warn!(
            "{name} starts or ends with whitespace; it is used as is, so check that it was \
             not pasted with a newline"
        );
    }
    let running = match app::start(config).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("crm_ingest: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = running.addr();
    println!("  webhook URL   http://{addr}{}", app::WEBHOOK_PATH);
    println!("  dashboard     http://{addr}/");
    match running.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm_ingest: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Uses the Redis store when `KENDO_DEDUPE_REDIS_URL` is set; on failure,
/// returns the exit code to stop with (after saying why).
async fn dedupe_store(config: &mut AppConfig) -> Result<(), ExitCode> {
    let Some(url) = std::env::var(REDIS_VAR).ok().filter(|url| !url.is_empty()) else {
        return Ok(());
    };
    #[cfg(feature = "redis")]
    {
        match kendo_webhooks::dedupe::RedisStore::builder(url)
            .build()
            .await
        {
            Ok(store) => {
                config.dedupe_store = Some(Box::new(store));
                // The URL may hold a password: name the variable, not its value.
                config.dedupe_description =
                    format!("Redis ({REDIS_VAR}), shared by replicas, keyed by event id");
                Ok(())
            }
            Err(error) => {
                eprintln!(
                    "crm_ingest: the Redis de-duplication store ({REDIS_VAR}) is unavailable: \
                     {error}. Or unset {REDIS_VAR} to de-duplicate in memory"
                );
                Err(ExitCode::FAILURE)
            }
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, config);
        eprintln!(
            "crm_ingest: {REDIS_VAR} is set, but this build has no Redis support. \
             Run with `cargo run --release --features redis --example crm_ingest`, \
             or unset {REDIS_VAR} to de-duplicate in memory"
        );
        Err(ExitCode::from(EXIT_CONFIG))
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
