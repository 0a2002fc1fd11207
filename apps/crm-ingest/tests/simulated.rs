//! The CRM app against the library's delivery simulator
//! (`kendo_webhooks::simulate`): Kendo's retries, resends, new delivery ids,
//! concurrent copies, requests cancelled after the commit, forgeries, test
//! and unknown events, over real HTTP to the app on `127.0.0.1:0`, on a real
//! SQLite file.
//!
//! What the app "applied" is read from its database: the row of the event in
//! `calls` or `trainings` (the projection), or, while the worker has not got
//! to it yet, its row in the inbox, which the worker will project. Both are
//! unique on the event id, so an event counted twice means the app stored
//! one event twice.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kendo_webhooks::simulate::Simulation;

/// How many times each event is stored: projected rows, or its inbox row
/// while it waits for the worker.
fn stored(db: &Path) -> HashMap<String, usize> {
    let connection = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the app's database to read it");
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .expect("set a busy timeout");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for table in ["calls", "trainings"] {
        let sql = format!("SELECT event_id, count(*) FROM {table} GROUP BY event_id");
        let mut statement = connection.prepare(&sql).expect("prepare");
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .expect("query");
        for row in rows {
            let (event_id, n) = row.expect("a row");
            *counts.entry(event_id).or_default() += usize::try_from(n).unwrap_or(0);
        }
    }
    let mut statement = connection
        .prepare("SELECT event_id FROM kendo_inbox")
        .expect("prepare");
    let queued = statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query");
    for event_id in queued {
        counts.entry(event_id.expect("a row")).or_insert(1);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crm_survives_kendos_worst_day() {
    let (_dir, db): (_, PathBuf) = temp_db();
    let app = start(config(&db)).await;
    let addr = app.addr();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // The simulator drives a tower service: this one sends each request to
    // the running app over HTTP.
    let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = format!("http://{addr}{}", parts.uri)
                .parse()
                .expect("a valid URI");
            client.request(Request::from_parts(parts, body)).await
        }
    });
    let report = Simulation::new(SECRET)
        .seed(2026)
        .events(200)
        .run(service, || stored(&db))
        .await;
    report.assert_ok();
    app.shutdown().await;
}
