//! The durable inbox on SQLite, through real HTTP: a file database in a
//! temporary directory, axum on a loopback port, a real worker.

use kendo_test_support::delivery_server as common;
mod suite;

use std::time::Duration;

use kendo_webhooks_inbox::{Inbox, InboxErrorKind};

async fn open() -> (tempfile::TempDir, std::path::PathBuf, Inbox) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let inbox = Inbox::open_sqlite(&path).await.unwrap();
    (dir, path, inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_then_answers_and_dedupes() {
    let (_dir, _, inbox) = open().await;
    suite::commits_then_answers_and_dedupes(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_hands_each_delivery_once() {
    let (_dir, _, inbox) = open().await;
    suite::worker_hands_each_delivery_once(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_then_requeue() {
    let (_dir, _, inbox) = open().await;
    suite::retries_then_dead_then_requeue(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_handler_is_cut_off_and_ends_dead() {
    let (_dir, _, inbox) = open().await;
    suite::hung_handler_is_cut_off_and_ends_dead(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_settles_rows_in_flight() {
    let (_dir, _, inbox) = open().await;
    suite::shutdown_settles_rows_in_flight(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_batch_loses_nothing() {
    let (_dir, _, inbox) = open().await;
    suite::restart_mid_batch_loses_nothing(inbox).await;
}

/// Another connection holds the write lock for 5 s (as a stuck process
/// would): the inbox answers 503 meanwhile and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_answers_503_and_loses_nothing() {
    let (_dir, path, inbox) = open().await;
    suite::outage_answers_503_and_loses_nothing(inbox, || async move {
        tokio::task::spawn_blocking(move || {
            let mut other = rusqlite::Connection::open(&path).unwrap();
            let lock = other
                .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
                .unwrap();
            std::thread::sleep(Duration::from_secs(5));
            lock.commit().unwrap();
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_rows_and_does_not_migrate_twice() {
    let (_dir, path, inbox) = open().await;
    let body = kendo_webhooks::TestDelivery::example("call.uploaded")
        .event_id("evt_1")
        .created_at("2026-03-05T12:00:00Z")
        .body();
    let delivery = kendo_webhooks::Delivery::parse(body, "dlv_1", "call.uploaded").unwrap();
    inbox.enqueue(&delivery).await.unwrap();
    drop(inbox);
    let reopened = Inbox::open_sqlite(&path).await.unwrap();
    assert_eq!(reopened.counts().await.unwrap().pending, 1);
    assert_eq!(
        reopened.enqueue(&delivery).await.unwrap(),
        kendo_webhooks_inbox::Enqueued::Duplicate
    );
}

#[tokio::test]
async fn a_directory_that_does_not_exist_is_an_error_that_says_so() {
    let error = Inbox::open_sqlite("/nonexistent-dir/inbox.db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), InboxErrorKind::Unavailable);
    // The driver's error is kept as the cause, for `{:#}`-style reporters.
    let cause = std::error::Error::source(&error).expect("the SQLite error as the cause");
    assert!(cause.is::<rusqlite::Error>(), "{cause:?}");
    assert!(error.to_string().contains(&cause.to_string()), "{error}");
    assert!(
        error.to_string().contains("/nonexistent-dir/inbox.db"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_worker_hands_batches_and_one_bad_row_fails_alone() {
    let (_dir, _, inbox) = open().await;
    suite::batch_worker_hands_batches_and_one_bad_row_fails_alone(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_done_rows_only() {
    let (_dir, path, inbox) = open().await;
    suite::retention_purges_old_done_rows_only(inbox.clone()).await;
    assert_counts_match_the_table(&path, &inbox).await;
}

/// The kept counts agree with a scan of the table.
async fn assert_counts_match_the_table(path: &std::path::Path, inbox: &Inbox) {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut scanned = kendo_webhooks_inbox::Counts::default();
    let mut query = connection
        .prepare("SELECT state, count(*) FROM kendo_inbox GROUP BY state")
        .unwrap();
    let rows = query
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
        })
        .unwrap();
    for row in rows {
        let (state, n) = row.unwrap();
        match state.as_str() {
            "pending" => scanned.pending = n,
            "leased" => scanned.leased = n,
            "done" => scanned.done = n,
            "failed" => scanned.failed = n,
            _ => scanned.dead += n,
        }
    }
    assert_eq!(inbox.counts().await.unwrap(), scanned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_follow_every_transition() {
    let (_dir, path, inbox) = open().await;
    suite::retries_then_dead_then_requeue(inbox.clone()).await;
    assert_counts_match_the_table(&path, &inbox).await;
}

#[tokio::test]
async fn a_version_1_inbox_is_migrated_keeping_its_rows_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(include_str!("../migrations/sqlite/0001_inbox.sql"))
            .unwrap();
        connection
            .execute_batch(
                "CREATE TABLE kendo_inbox_migrations (version INTEGER PRIMARY KEY,
                     name TEXT NOT NULL, applied_at INTEGER NOT NULL);
                 INSERT INTO kendo_inbox_migrations VALUES (1, 'create kendo_inbox', 0);
                 INSERT INTO kendo_inbox (event_id, delivery_id, event, body, received_at, state, next_at)
                 VALUES ('evt_a', 'dlv_a', 'call.uploaded', x'7b7d', 1, 'done', 2),
                        ('evt_b', 'dlv_b', 'call.uploaded', x'7b7d', 1, 'dead', 2),
                        ('evt_c', 'dlv_c', 'call.uploaded', x'7b7d', 1, 'pending', 1);",
            )
            .unwrap();
    }
    let inbox = Inbox::open_sqlite(&path).await.unwrap();
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.done, counts.dead, counts.pending),
        (1, 1, 1),
        "{counts:?}"
    );
    assert_counts_match_the_table(&path, &inbox).await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path, _inbox) = open().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// The file removed while open: deliveries are refused (never answered as
/// stored into an unlinked file), and health says so from memory.
#[tokio::test]
async fn a_removed_database_file_refuses_commits_and_turns_unhealthy() {
    let (dir, path, inbox) = open().await;
    suite::enqueue(&inbox, "evt_before").await;
    inbox.probe().await.unwrap();
    assert!(inbox.health().healthy);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let body = kendo_webhooks::TestDelivery::example("call.uploaded")
        .event_id("evt_after")
        .created_at("2026-03-05T12:00:00Z")
        .body();
    let delivery = kendo_webhooks::Delivery::parse(body, "dlv_after", "call.uploaded").unwrap();
    let error = inbox.enqueue(&delivery).await.unwrap_err();
    assert_eq!(error.kind(), InboxErrorKind::Unavailable);
    assert!(error.to_string().contains("removed"), "{error}");
    assert!(!inbox.health().healthy);
    assert!(inbox.probe().await.is_err());
    drop(dir);
}

/// Every query on the hot path and behind the dashboard reads an index:
/// SQLite's plan names no full scan of the inbox.
#[tokio::test]
async fn hot_queries_use_indexes() {
    let (_dir, path, inbox) = open().await;
    drop(inbox);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let queries = kendo_webhooks_inbox::sqlite_query_plans_for_tests();
    // Every statement the backend names, not a list that could go empty.
    assert!(queries.len() >= 14, "{} queries", queries.len());
    for (name, sql) in queries {
        let mut plan = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let count = plan.parameter_count();
        let params: Vec<rusqlite::types::Value> = (0..count)
            .map(|_| rusqlite::types::Value::Integer(1))
            .collect();
        let details: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(params), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // A scan of the five-row counts table is fine; of the inbox, never.
        let scans_inbox = |d: &String| {
            (d == "SCAN kendo_inbox" || d.starts_with("SCAN kendo_inbox ")) && !d.contains("INDEX")
        };
        assert!(
            !details.iter().any(scans_inbox),
            "{name} scans the inbox: {details:?}\n{sql}"
        );
        assert!(
            details.iter().any(|d| d.contains("INDEX")
                || d.contains("PRIMARY KEY")
                || d.contains("kendo_inbox_counts")),
            "{name} reads no index: {details:?}\n{sql}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hanging_handler_does_not_hold_the_others() {
    let (_dir, _, inbox) = open().await;
    suite::one_hanging_handler_does_not_hold_the_others(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_its_lease_is_handed_once() {
    let (_dir, _, inbox) = open().await;
    suite::a_handler_longer_than_its_lease_is_handed_once(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_shutdown_reports_every_hand_off() {
    let (_dir, _, inbox) = open().await;
    suite::run_until_shutdown_reports_every_hand_off(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim() {
    let (_dir, _, inbox) = open().await;
    suite::a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim(inbox).await;
}

/// A stored body that no longer parses (changed on disk by hand, or by a
/// bug elsewhere) is never handed to the handler: its row is made dead
/// with a sentence saying why, the report counts it, and the other rows
/// of its batch are handled as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_body_that_no_longer_parses_is_dead_and_never_handed() {
    let (_dir, path, inbox) = open().await;
    for id in ["evt_fine", "evt_mangled"] {
        suite::enqueue(&inbox, id).await;
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let changed = conn
        .execute(
            "UPDATE kendo_inbox SET body = CAST('{not json' AS BLOB) WHERE event_id = 'evt_mangled'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let recorder = std::sync::Arc::new(suite::Recorder::default());
    let worker = inbox
        .worker(recorder.handler())
        .poll_interval(Duration::from_millis(10))
        .spawn();
    suite::wait_until("one row done and one dead", || async {
        let counts = inbox.counts().await.unwrap();
        counts.done == 1 && counts.dead == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(
        (report.handed, report.succeeded, report.dead),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(recorder.count("evt_mangled"), 0);
    assert_eq!(recorder.count("evt_fine"), 1);
    let dead = inbox
        .list(kendo_webhooks_inbox::RowState::Dead, 10)
        .await
        .unwrap();
    let error = dead[0].last_error.as_deref().unwrap_or("");
    assert!(error.contains("no longer parses"), "{error}");
}

/// An event id holding a NUL (JSON allows `\u0000`) is settled on its own:
/// the batch settle passes the ids as JSON text, which would not carry it.
/// It ends done like its neighbour, not leased forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_with_a_nul_is_settled_done() {
    let (_dir, _, inbox) = open().await;
    for id in ["evt_plain", "evt_nul\u{0}x"] {
        suite::enqueue(&inbox, id).await;
    }
    let recorder = std::sync::Arc::new(suite::Recorder::default());
    let worker = inbox
        .worker(recorder.handler())
        .poll_interval(std::time::Duration::from_millis(20))
        .spawn();
    suite::wait_until("both rows done", || async {
        inbox.counts().await.unwrap().done == 2
    })
    .await;
    worker.shutdown().await;
    assert_eq!(recorder.count("evt_nul\u{0}x"), 1);
    let counts = inbox.counts().await.unwrap();
    assert_eq!((counts.done, counts.leased), (2, 0), "{counts:?}");
}
