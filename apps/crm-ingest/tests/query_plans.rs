//! Issue 18: every read the dashboard and the APIs make runs on an index,
//! so their cost does not grow with the tables. The app runs on a seeded
//! SQLite file with the `query-log` feature, which records each statement
//! of its reader connection; every page and API is loaded (with its
//! filters, searches and a second page), then each recorded statement's
//! `EXPLAIN QUERY PLAN` is read: a full scan of a table that grows fails.
//! Not covered, by design: `/api/status?tables=1` (it counts rows, and
//! says so) and searches of one or two characters (too short for a
//! trigram index: they scan, about 1 s at a million rows).
#![cfg(feature = "query-log")]

mod common;

use common::*;
use hyper::StatusCode;

/// Tables whose size does not grow with traffic (one row per agent, per
/// total, per state, per schema version, per field seen in a payload):
/// scanning them costs the same at any size.
const SMALL_TABLES: &[&str] = &[
    "call_agents",
    "crm_totals",
    "crm_schema",
    "kendo_inbox_counts",
    "payload_changes",
];

/// The tables a plan step touches without an index, if any.
fn full_scan<'a>(step: &'a str, sql: &str) -> Option<&'a str> {
    let rest = step.strip_prefix("SCAN ")?;
    if step.contains("USING INDEX")
        || step.contains("USING COVERING INDEX")
        || step.contains("USING INTEGER PRIMARY KEY")
        || step.contains("VIRTUAL TABLE")
    {
        return None;
    }
    let table = rest.split_whitespace().next()?;
    // Subqueries and CTEs (`SCAN c`, `SCAN (subquery-1)`) are scans of an
    // intermediate result, whose own steps are checked.
    let base = [
        "calls",
        "trainings",
        "deliveries",
        "unverified",
        "rejections",
        "payload_changes",
        "kendo_inbox",
        "arrivals",
        "agent_quarters",
    ];
    if !base.contains(&table) {
        return None;
    }
    // The newest rows in rowid order, with no filter: the scan stops after
    // LIMIT rows, whatever the table's size.
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let newest_first = format!("FROM {table} ORDER BY seq DESC LIMIT");
    (!sql.contains(&newest_first)).then_some(table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_apis_read_through_indexes_only() {
    let (dir, db) = temp_db();
    let config = config(&db);
    let seeded = crm_ingest::seed::run(&config, 0, 3_000)
        .await
        .expect("seeded");
    assert_eq!(seeded.stored, 3_000);
    let app = start(config).await;
    let http = Http::new();
    // Some log entries of every kind: accepted, duplicate, rejected.
    for i in 0..5 {
        let call = signed(
            "call.uploaded",
            &format!("evt_plan_{i}"),
            &format!("dlv_plan_{i}"),
        );
        assert_eq!(http.deliver(app.addr(), &call).await.status, StatusCode::OK);
        assert_eq!(http.deliver(app.addr(), &call).await.status, StatusCode::OK);
        assert_eq!(
            http.deliver(app.addr(), &forged(i)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    rows(
        &http,
        app.addr(),
        "/api/deliveries?limit=1000&outcome=duplicate",
        5,
    )
    .await;

    let mut paths: Vec<String> = [
        "/",
        "/?q=seed-call-12",
        "/?q=evt_plan",
        "/?outcome=rejected",
        "/api/calls?limit=1000",
        "/api/calls?limit=50&test=only",
        "/api/calls?limit=50&test=include",
        "/api/trainings?limit=1000",
        "/api/trainings?limit=50&test=only",
        "/api/deliveries?limit=1000",
        "/api/deliveries?limit=50&outcome=accepted",
        "/api/deliveries?limit=50&reason=invalid_signature",
        "/api/rejections",
        // The console (issue 19): search of three characters or more (a
        // trigram index), filters, a delivery, an agent, the exports.
        "/?q=Silva",
        "/api/calls?q=ana%20sil&limit=50",
        "/api/calls?q=seed-call-12&limit=50",
        "/api/trainings?q=lena&limit=50",
        "/api/deliveries?q=evt_plan&limit=50",
        "/api/deliveries?verified=false&limit=50",
        "/api/calls?from=2026-01-01&to=2026-12-31&limit=50",
        "/api/deliveries?event=call.uploaded&outcome=accepted&limit=50",
        "/deliveries/dlv_plan_1",
        "/api/deliveries/dlv_plan_1",
        "/agents/Ana%20Silva",
        "/api/calls?format=csv&q=ana",
        "/api/deliveries?format=csv",
        // Not `?tables=1`: it counts the tables' rows by design, and says so.
        "/api/status",
        "/api/inbox?state=dead",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    // Second pages, through the cursor each first page gives.
    for api in ["/api/calls", "/api/trainings", "/api/deliveries"] {
        let first = http.get(app.addr(), &format!("{api}?limit=10")).await;
        assert_eq!(first.status, StatusCode::OK, "{api}: {}", first.text());
        if let Some(next) = first.header("link").and_then(next_link) {
            paths.push(next);
        }
    }
    for path in &paths {
        let reply = http.get(app.addr(), path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }

    let statements = crm_ingest::query_log::recorded();
    assert!(
        statements.iter().any(|s| s.contains("FROM calls")),
        "the reader recorded no statement on calls: {statements:#?}"
    );
    let conn = rusqlite::Connection::open(&db).expect("the database opens");
    let mut scans = Vec::new();
    for sql in &statements {
        let trimmed = sql.trim_start().to_ascii_uppercase();
        if !(trimmed.starts_with("SELECT") || trimmed.starts_with("WITH")) {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
        let steps: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .expect("a plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        for step in &steps {
            if let Some(table) = full_scan(step, sql) {
                if !SMALL_TABLES.contains(&table) {
                    scans.push(format!("{step}\n    in: {sql}"));
                }
            }
        }
    }
    println!("{} statements explained", statements.len());
    assert!(scans.is_empty(), "full scans:\n{}", scans.join("\n"));
    app.shutdown().await;
    drop(dir);
}

/// The path of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    let url = &link[start..end];
    let path = url.find("/api/").map_or(url, |i| &url[i..]);
    Some(path.to_owned())
}
