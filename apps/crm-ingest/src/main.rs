//! Run with: `KENDO_WEBHOOK_SECRET=... cargo run --release -p crm-ingest`
//!
//! A CRM ingest service for Kendo webhooks, following Kendo's best
//! practices: verify every delivery, commit it durably before answering
//! 200, process it in the background (into `calls` and `trainings`), drop
//! duplicates (across restarts and replicas), keep a delivery log. SQLite
//! by default; `CRM_DATABASE_URL=postgres://…` for any number of replicas.
//! Settings: see `crm_ingest::config` and `docs/deployment.md`.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use crm_ingest::config::{AppConfig, ADMIN_TOKEN_VAR, REDIS_VAR};
use crm_ingest::warnings::log_filter;
use crm_ingest::{app, routes};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Exit code for a configuration the app cannot run with.
const EXIT_CONFIG: u8 = 2;

/// The secret the README's two commands use, so its banner line can be
/// copied as is.
const DOCUMENTED_SECRET: &str = "change-me";

#[tokio::main]
async fn main() -> ExitCode {
    // `RUST_LOG` as `Targets` (`info`, `warn,crm_ingest=debug`, …): the same
    // directives as `EnvFilter` without span filters, and without compiling
    // a regex engine into the app. By default the library's per-request
    // lines are off: `crm_ingest::warnings` reports failures rate-limited.
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
        .with(filter)
        .init();

    let mut config = match AppConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("crm-ingest: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // `crm-ingest seed N [FIRST]`: demo and benchmark data, then exit.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seed") {
        return seed(&config, &args[1..]).await;
    }
    if let Err(code) = dedupe_store(&mut config).await {
        return code;
    }

    println!("crm-ingest: Kendo webhook receiver");
    for line in config.describe() {
        println!("  {line}");
    }
    for name in config.padded_secrets() {
        tracing::warn!(
            "{name} starts or ends with whitespace; it is used as is, so check that it was \
             not pasted with a newline"
        );
    }
    let documented_secret = config.secret == DOCUMENTED_SECRET;
    let running = match app::start(config).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("crm-ingest: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = running.addr();
    println!("  webhook URL   http://{addr}{}", routes::WEBHOOK_PATH);
    // A ready first delivery: the README's secret is shown as is, any other
    // by the variable that holds it (a real secret is never printed).
    let secret = if documented_secret {
        DOCUMENTED_SECRET
    } else {
        "\"$KENDO_WEBHOOK_SECRET\""
    };
    println!(
        "  try it        cargo run --release -p kendo-webhook-cli -- send --url http://{addr}{} --secret {secret}\n                \
         (a test delivery; add --real --count 20 --agents Ana,Bob,Chen --scores 40..95 to fill the dashboard)",
        routes::WEBHOOK_PATH,
    );
    if running.token_generated() {
        println!(
            "  dashboard     http://{addr}/  (log in with any user name and the password {token};\n                \
             {ADMIN_TOKEN_VAR} was unset, so this token was generated and lasts until restart)\n  \
             API           curl -H 'Authorization: Bearer {token}' http://{addr}/api/calls",
            token = running.admin_token()
        );
    } else {
        println!(
            "  dashboard     http://{addr}/  (log in with any user name and {ADMIN_TOKEN_VAR} as password)"
        );
    }
    running.run_until(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// `seed N [FIRST]`: N synthetic deliveries numbered from FIRST (default 0)
/// through the inbox and the projection.
async fn seed(config: &AppConfig, args: &[String]) -> ExitCode {
    let number = |i: usize, default: Option<u64>| {
        args.get(i)
            .map_or(default, |value| value.parse::<u64>().ok())
    };
    let (Some(count), Some(first)) = (number(0, None), number(1, Some(0))) else {
        eprintln!("usage: crm-ingest seed N [FIRST]   (N deliveries, event ids from FIRST)");
        return ExitCode::from(EXIT_CONFIG);
    };
    match crm_ingest::seed::run(config, first, count).await {
        Ok(report) => {
            let seconds = report.elapsed.as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = report.stored as f64 / seconds.max(1e-9);
            println!(
                "crm-ingest seed: {} deliveries stored, {} projected, in {seconds:.1} s ({rate:.0}/s; committed in {:.1} s)",
                report.stored, report.projected, report.committed_in.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crm-ingest seed: {error}");
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
        match kendo_webhooks_redis::RedisStore::builder(url).build().await {
            Ok(store) => {
                config.dedupe_store = Some(Box::new(store));
                // The URL may hold a password: name the variable, not its value.
                config.dedupe_description = format!(
                    "Redis ({REDIS_VAR}) shared by replicas, then the database's unique event id"
                );
                Ok(())
            }
            Err(error) => {
                eprintln!(
                    "crm-ingest: the Redis de-duplication store ({REDIS_VAR}) is unavailable: \
                     {error}. Or unset {REDIS_VAR}: the database de-duplicates anyway"
                );
                Err(ExitCode::FAILURE)
            }
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, config);
        eprintln!(
            "crm-ingest: {REDIS_VAR} is set, but this build has no Redis support. \
             Run with `cargo run --release -p crm-ingest --features redis`, \
             or unset {REDIS_VAR}: the database de-duplicates anyway"
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
