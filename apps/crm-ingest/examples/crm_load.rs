//! Run with: `cargo run --release -p crm-ingest --example crm_load -- --url http://127.0.0.1:PORT --token TOKEN --secret SECRET`
//!
//! Does the inbox worker of a running `crm-ingest` keep up with ingest?
//! Drives its webhook with `--concurrency` HTTP/1.1 keep-alive connections
//! (default 64) of pre-signed, unique `call.uploaded` deliveries for
//! `--duration` seconds (default 20), then polls `GET /api/status` (admin
//! token) every 250 ms until the inbox backlog is empty (at most
//! `--drain-limit` seconds, default 120). Prints ingest/s, the backlog when
//! the load stopped (and in seconds of that ingest), how long it took to
//! drain, and the worker's rows/s.
//!
//! `--naive PATH` drives instead a naive receiver in this process (axum +
//! `KendoWebhookLayer` + one SQLite transaction per delivery, WAL,
//! `synchronous=FULL`, in the SQLite file PATH): the baseline to compare
//! ingest with, on the same disk in the same session. `--start N` numbers
//! the event ids from N (to run again against the same database).
//! Loopback only; everything is bounded by time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::routing::post;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::{
    sign, Delivery, KendoWebhookLayer, TestDelivery, CALL_UPLOADED, DELIVERY_ID_HEADER,
    EVENT_HEADER, SIGNATURE_HEADER,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    url: String,
    token: String,
    secret: String,
    concurrency: usize,
    duration: Duration,
    drain_limit: Duration,
    naive: Option<std::path::PathBuf>,
    start: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        url: String::new(),
        token: String::new(),
        secret: "whsec_crm_load".into(),
        concurrency: 64,
        duration: Duration::from_secs(20),
        drain_limit: Duration::from_secs(120),
        naive: None,
        start: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let secs = |v: &str| {
            v.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|e| e.to_string())
        };
        match arg.as_str() {
            "--url" => o.url = value.trim_end_matches('/').to_owned(),
            "--token" => o.token = value,
            "--secret" => o.secret = value,
            "--concurrency" => o.concurrency = value.parse().map_err(|e| format!("{e}"))?,
            "--duration" => o.duration = secs(&value)?,
            "--drain-limit" => o.drain_limit = secs(&value)?,
            "--naive" => o.naive = Some(value.into()),
            "--start" => o.start = value.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.url.is_empty() && o.naive.is_none() {
        return Err("--url (a running crm-ingest) or --naive PATH is required".into());
    }
    Ok(o)
}

/// The naive receiver: one SQLite transaction per delivery.
async fn naive(path: &std::path::Path, secret: &str) -> Result<SocketAddr, BoxError> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS inbox (event_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL,
             event TEXT NOT NULL, body BLOB NOT NULL, received_ms INTEGER NOT NULL);",
    )?;
    let connection = Arc::new(Mutex::new(connection));
    let handler = move |Extension(delivery): Extension<Delivery>| {
        let connection = Arc::clone(&connection);
        async move {
            let stored = tokio::task::spawn_blocking(move || {
                let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT OR IGNORE INTO inbox VALUES (?1, ?2, ?3, ?4, 0)",
                    rusqlite::params![
                        delivery.event_id(),
                        delivery.delivery_id(),
                        delivery.event_name(),
                        delivery.body().as_ref(),
                    ],
                )?;
                tx.commit()
            })
            .await;
            match stored {
                Ok(Ok(())) => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    let router = Router::new().route(
        "/webhooks/kendo",
        post(handler).layer(KendoWebhookLayer::new(secret)?),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

async fn status(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    url: &str,
    token: &str,
) -> Result<serde_json::Value, BoxError> {
    let request = Request::get(format!("{url}/api/status"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())?;
    let response = client.request(request).await?;
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let o = options().map_err(|e| format!("{e}\nusage: crm_load --url URL --token T --secret S [--concurrency 64] [--duration 20] [--naive PATH] [--start N]"))?;
    let url = match &o.naive {
        Some(path) => format!("http://{}", naive(path, &o.secret).await?),
        None => o.url.clone(),
    };
    // Enough pre-signed deliveries for 40k/s.
    let count = (o.duration.as_secs_f64() * 40_000.0) as usize + 10_000;
    let started = Instant::now();
    let deliveries: Arc<Vec<_>> = Arc::new(
        (o.start..o.start + count)
            .map(|i| {
                let body = TestDelivery::example(CALL_UPLOADED)
                    .event_id(format!("evt-load-{i:09}"))
                    .created_at("2026-03-05T12:00:00Z")
                    .body();
                let signature = HeaderValue::from_str(&sign(&o.secret, &body)).expect("hex");
                let id = HeaderValue::from_str(&format!("dlv-load-{i:09}")).expect("ascii");
                (body, signature, id)
            })
            .collect(),
    );
    eprintln!(
        "pre-signed {count} deliveries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client: Client<_, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(o.concurrency)
        .build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let end = start + o.duration;
    let tasks: Vec<_> = (0..o.concurrency)
        .map(|_| {
            let (client, deliveries, next, ok, failed, url) = (
                client.clone(),
                Arc::clone(&deliveries),
                Arc::clone(&next),
                Arc::clone(&ok),
                Arc::clone(&failed),
                format!("{url}/webhooks/kendo"),
            );
            tokio::spawn(async move {
                while Instant::now() < end {
                    let Some((body, signature, id)) =
                        deliveries.get(next.fetch_add(1, Ordering::Relaxed))
                    else {
                        break;
                    };
                    let request = Request::builder()
                        .method(Method::POST)
                        .uri(&url)
                        .header(header::CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, signature.clone())
                        .header(EVENT_HEADER, CALL_UPLOADED)
                        .header(DELIVERY_ID_HEADER, id.clone())
                        .body(Body::from(body.clone()))
                        .expect("a request");
                    let answered = tokio::time::timeout(Duration::from_secs(10), async {
                        let response = client.request(request).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        Ok::<_, BoxError>(status)
                    })
                    .await;
                    match answered {
                        Ok(Ok(status)) if status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let accepted = ok.load(Ordering::Relaxed);
    let rate = accepted as f64 / elapsed;
    println!(
        "ingest: {accepted} accepted in {elapsed:.1} s = {rate:.0}/s ({} not 2xx or failed)",
        failed.load(Ordering::Relaxed)
    );
    if o.naive.is_some() {
        println!(
            "RESULT receiver=naive concurrency={} ingest_rps={rate:.0}",
            o.concurrency
        );
        return Ok(());
    }
    let first = status(&client, &url, &o.token).await?;
    let backlog_at_stop = first["inbox"]["backlog"].as_u64().unwrap_or(0);
    let drain_start = Instant::now();
    let mut drained = backlog_at_stop == 0;
    let mut last = first.clone();
    while !drained && drain_start.elapsed() < o.drain_limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = status(&client, &url, &o.token).await?;
        drained = last["inbox"]["backlog"].as_u64() == Some(0);
    }
    let drain = drain_start.elapsed().as_secs_f64();
    let done = last["inbox"]["done"].as_u64().unwrap_or(0);
    println!(
        "backlog when the load stopped: {backlog_at_stop} rows = {:.2} s of ingest; {} after {drain:.1} s; done rows {done}; worker {:.0} rows/s (last 10 s)",
        backlog_at_stop as f64 / rate.max(1.0),
        if drained { "empty" } else { "NOT empty" },
        first["worker"]["rowsPerSecond"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "RESULT receiver=crm-ingest concurrency={} seconds={elapsed:.1} ingest_rps={rate:.0} backlog_at_stop={backlog_at_stop} drain_s={drain:.1} drained={drained} done={done} log_queued={} log_dropped_unverified={}",
        o.concurrency,
        last["deliveryLog"]["queued"],
        last["deliveryLog"]["droppedUnverified"],
    );
    Ok(())
}
