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
    let body =
        kendo_webhooks::example_body("call.uploaded", "evt_1", "2026-03-05T12:00:00Z", false);
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
    assert!(
        error.to_string().contains("/nonexistent-dir/inbox.db"),
        "{error}"
    );
}
