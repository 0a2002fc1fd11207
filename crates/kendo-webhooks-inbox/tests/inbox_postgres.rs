//! The durable inbox on PostgreSQL, through real HTTP: each test starts its
//! own server (`initdb` + `postgres` on a free loopback port; SKIPPED when
//! PostgreSQL is not installed, a failure under `CI`).

use kendo_test_support::delivery_server as common;
use kendo_test_support::postgres_server;
mod suite;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use kendo_webhooks_inbox::{Inbox, InboxErrorKind};
use postgres_server::PostgresServer;

async fn open(test: &str) -> Option<(PostgresServer, Inbox)> {
    let server = PostgresServer::start_or_skip(test)?;
    let inbox = Inbox::connect_postgres(&server.url()).await.unwrap();
    Some((server, inbox))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_then_answers_and_dedupes() {
    let Some((_server, inbox)) = open("commits_then_answers_and_dedupes").await else {
        return;
    };
    suite::commits_then_answers_and_dedupes(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_hands_each_delivery_once() {
    let Some((_server, inbox)) = open("worker_hands_each_delivery_once").await else {
        return;
    };
    suite::worker_hands_each_delivery_once(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_then_requeue() {
    let Some((_server, inbox)) = open("retries_then_dead_then_requeue").await else {
        return;
    };
    suite::retries_then_dead_then_requeue(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_handler_is_cut_off_and_ends_dead() {
    let Some((_server, inbox)) = open("hung_handler_is_cut_off_and_ends_dead").await else {
        return;
    };
    suite::hung_handler_is_cut_off_and_ends_dead(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_settles_rows_in_flight() {
    let Some((_server, inbox)) = open("shutdown_settles_rows_in_flight").await else {
        return;
    };
    suite::shutdown_settles_rows_in_flight(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_batch_loses_nothing() {
    let Some((_server, inbox)) = open("restart_mid_batch_loses_nothing").await else {
        return;
    };
    suite::restart_mid_batch_loses_nothing(inbox).await;
}

/// The server is stopped for 5 s and started again on the same port and
/// data directory: 503s meanwhile, nothing lost after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_answers_503_and_loses_nothing() {
    let Some((server, inbox)) = open("server_down_answers_503_and_loses_nothing").await else {
        return;
    };
    let server = Arc::new(std::sync::Mutex::new(server));
    let outage_server = Arc::clone(&server);
    suite::outage_answers_503_and_loses_nothing(inbox, || async move {
        tokio::task::spawn_blocking(move || {
            let mut server = outage_server.lock().unwrap();
            server.stop();
            std::thread::sleep(Duration::from_secs(5));
            server.restart();
        })
        .await
        .unwrap();
    })
    .await;
    drop(server);
}

/// Two replicas (two inboxes, two workers) share one database: every
/// delivery is handed exactly once, by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_database_never_double_hand() {
    const N: usize = 600;
    let Some((server, first)) = open("two_workers_on_one_database_never_double_hand").await else {
        return;
    };
    let second = Inbox::connect_postgres(&server.url()).await.unwrap();
    let client = common::client();
    let (a, b) = (
        suite::serve_inbox(&first).await,
        suite::serve_inbox(&second).await,
    );
    let mut senders = Vec::new();
    for task in 0..8 {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            for i in (task..N).step_by(8) {
                let addr = if i % 2 == 0 { a } else { b };
                let answer =
                    suite::post(&client, addr, &format!("evt_{i}"), &format!("dlv_{i}")).await;
                assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let recorder = Arc::new(suite::Recorder::default());
    let workers: Vec<_> = [&first, &second]
        .into_iter()
        .map(|inbox| {
            inbox
                .worker(recorder.handler())
                .batch_size(8)
                .poll_interval(Duration::from_millis(5))
                .spawn()
        })
        .collect();
    suite::wait_until("every delivery is done", || async {
        first.counts().await.unwrap().done == N as u64
    })
    .await;
    let mut reports = Vec::new();
    for worker in workers {
        reports.push(worker.shutdown().await);
    }
    println!(
        "handed by each worker: {:?}",
        reports.iter().map(|r| r.handed).collect::<Vec<_>>()
    );
    assert_eq!(
        reports.iter().map(|r| r.handed).sum::<u64>(),
        N as u64,
        "{reports:?}"
    );
    for i in 0..N {
        assert_eq!(recorder.count(&format!("evt_{i}")), 1, "evt_{i}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_that_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = Inbox::connect_postgres(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), InboxErrorKind::Unavailable);
    assert!(error.to_string().contains("could not connect"), "{error}");
    let error = Inbox::connect_postgres("postgres://[nonsense")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not parse"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_worker_hands_batches_and_one_bad_row_fails_alone() {
    let Some((_server, inbox)) =
        open("batch_worker_hands_batches_and_one_bad_row_fails_alone").await
    else {
        return;
    };
    suite::batch_worker_hands_batches_and_one_bad_row_fails_alone(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_done_rows_only() {
    let Some((server, inbox)) = open("retention_purges_old_done_rows_only").await else {
        return;
    };
    suite::retention_purges_old_done_rows_only(inbox.clone()).await;
    // The kept counts agree with a scan of the table.
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT state, count(*) FROM kendo_inbox GROUP BY state",
            &[],
        )
        .await
        .unwrap();
    let scanned: std::collections::HashMap<String, i64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let counts = inbox.counts().await.unwrap();
    assert_eq!(counts.done, 0);
    assert_eq!(
        counts.failed as i64,
        scanned.get("failed").copied().unwrap_or(0)
    );
    assert_eq!(
        counts.dead as i64,
        scanned.get("dead").copied().unwrap_or(0)
    );
    assert_eq!(
        counts.pending as i64,
        scanned.get("pending").copied().unwrap_or(0)
    );
    inbox.probe().await.unwrap();
    assert!(inbox.health().healthy);
}

/// Issue 17, #5: an event id Postgres cannot store as a key (a NUL, or
/// 3,000 characters) is stored anyway, and the good deliveries committed in
/// the same group are not refused with it; each is handed to the handler
/// with its id as sent, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_a_nul_or_over_long_are_stored_and_their_group_is_not_refused() {
    let Some((_server, inbox)) =
        open("ids_with_a_nul_or_over_long_are_stored_and_their_group_is_not_refused").await
    else {
        return;
    };
    let long = "x".repeat(3_000);
    let ids: Vec<String> = ["evt_nul\0id", long.as_str(), "evt_good_1", "evt_good_2"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // Concurrently, so they share group commits.
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let inbox = inbox.clone();
        tasks.spawn(async move { suite::enqueue(&inbox, &id).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert_eq!(inbox.counts().await.unwrap().pending, 4);
    // Again: duplicates, recognised by the same stored keys.
    for id in &ids {
        let body = kendo_webhooks::TestDelivery::example("call.uploaded")
            .event_id(id)
            .created_at("2026-03-05T12:00:00Z")
            .body();
        let delivery = kendo_webhooks::Delivery::parse(body, "dlv_again", "call.uploaded").unwrap();
        assert_eq!(
            inbox.enqueue(&delivery).await.unwrap(),
            kendo_webhooks_inbox::Enqueued::Duplicate,
            "{}",
            id.len()
        );
    }
    let handled = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&handled);
    let worker = inbox
        .worker(move |delivery: kendo_webhooks::Delivery| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(delivery.event_id().to_owned());
                Ok::<(), String>(())
            }
        })
        .poll_interval(Duration::from_millis(20))
        .spawn();
    suite::wait_until("all four done", || async {
        inbox.counts().await.unwrap().done == 4
    })
    .await;
    worker.shutdown().await;
    let mut handled = handled.lock().unwrap().clone();
    handled.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(handled, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hanging_handler_does_not_hold_the_others() {
    let Some((_server, inbox)) = open("one_hanging_handler_does_not_hold_the_others").await else {
        return;
    };
    suite::one_hanging_handler_does_not_hold_the_others(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_its_lease_is_handed_once() {
    let Some((_server, inbox)) = open("a_handler_longer_than_its_lease_is_handed_once").await
    else {
        return;
    };
    suite::a_handler_longer_than_its_lease_is_handed_once(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_shutdown_reports_every_hand_off() {
    let Some((_server, inbox)) = open("run_until_shutdown_reports_every_hand_off").await else {
        return;
    };
    suite::run_until_shutdown_reports_every_hand_off(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim() {
    let Some((_server, inbox)) =
        open("a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim").await
    else {
        return;
    };
    suite::a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim(inbox).await;
}

/// What an unavailable database says: the server's own message with its
/// SQLSTATE when it answered with a refusal, and the connection's error
/// with what to check when it did not answer at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_database_says_why() {
    let Some((mut server, inbox)) = open("an_unavailable_database_says_why").await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("ALTER TABLE kendo_inbox RENAME TO kendo_inbox_moved")
        .await
        .unwrap();
    let refused = inbox
        .list(kendo_webhooks_inbox::RowState::Pending, 10)
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("kendo_inbox") && text.contains("(SQLSTATE 42P01)"),
        "{text}"
    );
    drop(client);

    server.stop();
    let down = inbox
        .list(kendo_webhooks_inbox::RowState::Pending, 10)
        .await
        .unwrap_err();
    assert_eq!(down.kind(), InboxErrorKind::Unavailable, "{down}");
    assert!(
        down.to_string()
            .contains("is the server running and reachable?"),
        "{down}"
    );
}

/// One delivery the database refuses (here a trigger raises for its event
/// id) does not fail the others committed in the same group: the group is
/// tried again row by row, the refused one gets the database's error, every
/// other one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_fails_alone_in_its_group() {
    let Some((server, inbox)) = open("a_refused_row_fails_alone_in_its_group").await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.event_id = 'evt_refused' THEN RAISE EXCEPTION 'refused by the test'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_one BEFORE INSERT ON kendo_inbox
               FOR EACH ROW EXECUTE FUNCTION refuse_one();
             BEGIN;
             LOCK TABLE kendo_inbox IN EXCLUSIVE MODE;",
        )
        .await
        .unwrap();
    let delivery = |id: &str| {
        let body = kendo_webhooks::TestDelivery::example("call.uploaded")
            .event_id(id)
            .body();
        kendo_webhooks::Delivery::parse(body, &format!("dlv_{id}"), "call.uploaded").unwrap()
    };
    // The first insert waits on the lock; the others queue behind it and
    // are committed as one group when it is released.
    let first = {
        let inbox = inbox.clone();
        let delivery = delivery("evt_first");
        tokio::spawn(async move { inbox.enqueue(&delivery).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids: Vec<String> = (0..10)
        .map(|i| format!("evt_ok_{i}"))
        .chain(["evt_refused".to_owned()])
        .chain((10..20).map(|i| format!("evt_ok_{i}")))
        .collect();
    let mut tasks = Vec::new();
    for id in &ids {
        let inbox = inbox.clone();
        let delivery = delivery(id);
        tasks.push(tokio::spawn(async move { inbox.enqueue(&delivery).await }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();

    assert_eq!(
        first.await.unwrap().unwrap(),
        kendo_webhooks_inbox::Enqueued::Stored
    );
    for (id, task) in ids.iter().zip(tasks) {
        let outcome = task.await.unwrap();
        if id == "evt_refused" {
            let error = outcome.unwrap_err();
            assert!(error.to_string().contains("refused by the test"), "{error}");
        } else {
            assert_eq!(
                outcome.unwrap(),
                kendo_webhooks_inbox::Enqueued::Stored,
                "{id}"
            );
        }
    }
    assert_eq!(inbox.counts().await.unwrap().pending, 21);
}
