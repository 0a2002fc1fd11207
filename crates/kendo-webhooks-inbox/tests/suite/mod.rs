//! Scenarios of the durable inbox, run against each backend through real
//! HTTP: axum on a loopback port, `KendoWebhookLayer` in front of the
//! `Inbox` service, a real worker and a recording handler.
//!
//! (About 850 lines, one file on purpose: the scenarios both backends run, written once and
//! called by `inbox_sqlite.rs` and `inbox_postgres.rs`.)
//!
//! Include it after `mod common;` with
//! `mod suite;`.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post_service;
use axum::Router;
use http::StatusCode;
use kendo_webhooks::{Delivery, KendoWebhookLayer, TestDelivery};
use kendo_webhooks_inbox::{Inbox, RowState, INBOX_HEADER};

use crate::common::{client, delivery, send, serve, Answer, HttpClient, PATH, SECRET};

/// Pause between two looks in the bounded waits below.
const STEP: Duration = Duration::from_millis(20);
/// Looks before a bounded wait gives up (60 s of steps).
const STEPS: usize = 3_000;

/// Serves `inbox` behind the layer on a free loopback port.
pub async fn serve_inbox(inbox: &Inbox) -> SocketAddr {
    let layer = KendoWebhookLayer::new(SECRET).expect("a valid layer");
    let router = Router::new().route(PATH, post_service(inbox.clone()).layer(layer));
    serve(router).await
}

/// Sends a `call.uploaded` delivery with these ids to `addr`.
pub async fn post(
    client: &HttpClient,
    addr: SocketAddr,
    event_id: &str,
    delivery_id: &str,
) -> Answer {
    let request = delivery(event_id, delivery_id)
        .request(&format!("http://{addr}{PATH}"))
        .expect("a valid request");
    send(client, request).await
}

fn outcome(answer: &Answer) -> &str {
    answer
        .headers
        .get(INBOX_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Waits, in bounded steps, until `check` holds; panics naming `what`.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..STEPS {
        if check().await {
            return;
        }
        tokio::time::sleep(STEP).await;
    }
    panic!("gave up waiting until {what}");
}

/// How often the handler saw each event id, and how it behaves.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<HashMap<String, u32>>,
    /// Event ids whose handling fails while they are in this list.
    pub failing: Mutex<Vec<String>>,
    /// Event ids whose handling never finishes (a hung handler).
    pub hanging: Mutex<Vec<String>>,
    /// Event ids whose handling takes 300 ms.
    pub slow: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn count(&self, event_id: &str) -> u32 {
        self.seen
            .lock()
            .unwrap()
            .get(event_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.seen.lock().unwrap().values().sum()
    }

    pub fn handler(
        self: &Arc<Self>,
    ) -> impl Fn(Delivery) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
           + Send
           + Sync
           + 'static {
        let recorder = Arc::clone(self);
        move |delivery: Delivery| {
            let recorder = Arc::clone(&recorder);
            Box::pin(async move {
                let id = delivery.event_id().to_owned();
                *recorder.seen.lock().unwrap().entry(id.clone()).or_default() += 1;
                if recorder.slow.lock().unwrap().contains(&id) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if recorder.hanging.lock().unwrap().contains(&id) {
                    std::future::pending::<()>().await;
                }
                if recorder.failing.lock().unwrap().contains(&id) {
                    return Err(format!("the CRM refused {id}"));
                }
                Ok(())
            })
        }
    }
}

/// A new event is committed and answered 200 `stored`; the same event again
/// (a new delivery id, or after a restart that emptied the layer's memory)
/// is answered 200 `duplicate` and stored once.
pub async fn commits_then_answers_and_dedupes(inbox: Inbox) {
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let first = post(&client, addr, "evt_1", "dlv_1").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(outcome(&first), "stored");
    let pending = inbox.list(RowState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, "evt_1");
    assert_eq!(pending[0].delivery_id, "dlv_1");
    assert_eq!(pending[0].body, *delivery("evt_1", "dlv_1").body());
    assert_eq!(pending[0].delivery().unwrap().event_id(), "evt_1");

    // Same event under a new delivery id: the layer's de-dup key differs,
    // the inbox's unique event id catches it.
    let again = post(&client, addr, "evt_1", "dlv_2").await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(outcome(&again), "duplicate");

    // A restarted receiver (a new layer, empty memory) still knows it.
    let restarted = serve_inbox(&inbox).await;
    let retry = post(&client, restarted, "evt_1", "dlv_1").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(outcome(&retry), "duplicate");

    let counts = inbox.counts().await.unwrap();
    assert_eq!(counts.pending, 1, "{counts:?}");
    assert_eq!(counts.backlog(), 1);
}

/// Many concurrent deliveries are all committed, and the worker hands each
/// to the handler exactly once when nothing fails.
pub async fn worker_hands_each_delivery_once(inbox: Inbox) {
    const N: usize = 300;
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let mut senders = Vec::new();
    for task in 0..16 {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            for i in (task..N).step_by(16) {
                let answer = post(&client, addr, &format!("evt_{i}"), &format!("dlv_{i}")).await;
                assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
                assert_eq!(outcome(&answer), "stored");
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let recorder = Arc::new(Recorder::default());
    let worker = inbox
        .worker(recorder.handler())
        .batch_size(32)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_until("every delivery is done", || async {
        inbox.counts().await.unwrap().done == N as u64
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.handed, N as u64, "{report:?}");
    assert_eq!(report.succeeded, N as u64);
    for i in 0..N {
        assert_eq!(recorder.count(&format!("evt_{i}")), 1, "evt_{i}");
    }
}

/// A failing delivery is retried with backoff up to `max_attempts`, then
/// dead; listed, re-queued, it is handed again and done.
pub async fn retries_then_dead_then_requeue(inbox: Inbox) {
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let recorder = Arc::new(Recorder::default());
    recorder.failing.lock().unwrap().push("evt_bad".to_owned());
    assert_eq!(
        post(&client, addr, "evt_bad", "dlv_bad").await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(&client, addr, "evt_good", "dlv_good").await.status,
        StatusCode::OK
    );
    let worker = inbox
        .worker(recorder.handler())
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("evt_bad is dead", || async {
        inbox.counts().await.unwrap().dead == 1
    })
    .await;
    let dead = inbox.list(RowState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "evt_bad");
    assert_eq!(dead[0].attempts, 3);
    let error = dead[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("attempt 3 of 3") && error.contains("the CRM refused evt_bad"),
        "{error}"
    );
    assert_eq!(recorder.count("evt_bad"), 3);
    assert_eq!(recorder.count("evt_good"), 1);

    // Nothing more happens to a dead row until it is re-queued.
    assert!(
        !inbox.requeue("evt_good").await.unwrap(),
        "only dead and failed rows re-queue"
    );
    let row = inbox.get("evt_bad").await.unwrap().expect("the dead row");
    assert_eq!((row.state, row.attempts), (RowState::Dead, 3));
    assert_eq!(
        inbox.get("evt_good").await.unwrap().map(|r| r.state),
        Some(RowState::Done)
    );
    assert!(inbox.get("evt_nowhere").await.unwrap().is_none());
    recorder.failing.lock().unwrap().clear();
    assert!(inbox.requeue("evt_bad").await.unwrap());
    wait_until("evt_bad is done after the re-queue", || async {
        inbox.counts().await.unwrap().done == 2
    })
    .await;
    assert_eq!(recorder.count("evt_bad"), 4);
    let report = worker.shutdown().await;
    assert_eq!(report.dead, 1, "{report:?}");
    assert_eq!(inbox.requeue_dead().await.unwrap(), 0);
}

/// A worker killed mid-batch loses nothing: a new worker takes its rows once
/// their leases end, and no delivery is handed more often than
/// `max_attempts` allows.
pub async fn restart_mid_batch_loses_nothing(inbox: Inbox) {
    const N: usize = 120;
    const MAX_ATTEMPTS: u32 = 3;
    let client = client();
    let addr = serve_inbox(&inbox).await;
    for i in 0..N {
        assert_eq!(
            post(&client, addr, &format!("evt_{i}"), &format!("dlv_{i}"))
                .await
                .status,
            StatusCode::OK
        );
    }
    // The first worker hangs on every tenth delivery from evt_20 on, so its
    // second batch never settles: it dies holding leased rows, most of them
    // already handed successfully.
    let first = Arc::new(Recorder::default());
    first
        .hanging
        .lock()
        .unwrap()
        .extend((0..N).step_by(10).skip(2).map(|i| format!("evt_{i}")));
    // A long grace: only an abort (not a graceful stop, which would keep
    // renewing the hung rows' leases for the grace) frees them at once.
    let worker = inbox
        .worker(first.handler())
        .batch_size(16)
        .max_attempts(MAX_ATTEMPTS)
        .lease(Duration::from_secs(1))
        .shutdown_grace(Duration::from_secs(600))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until(
        "the first worker is stuck mid-batch with rows leased",
        || async { first.count("evt_20") == 1 && inbox.counts().await.unwrap().leased > 0 },
    )
    .await;
    worker.abort();
    let leased = inbox.counts().await.unwrap().leased;
    assert!(leased > 0);

    let second = Arc::new(Recorder::default());
    let worker = inbox
        .worker(second.handler())
        .batch_size(16)
        .max_attempts(MAX_ATTEMPTS)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("every delivery is done after the restart", || async {
        inbox.counts().await.unwrap().done == N as u64
    })
    .await;
    worker.shutdown().await;
    let counts = inbox.counts().await.unwrap();
    assert_eq!((counts.dead, counts.backlog()), (0, 0), "{counts:?}");
    let mut handed_twice = 0;
    for i in 0..N {
        let id = format!("evt_{i}");
        let handed = first.count(&id) + second.count(&id);
        assert!(
            (1..=MAX_ATTEMPTS).contains(&handed),
            "{id} handed {handed} times"
        );
        if handed > 1 {
            handed_twice += 1;
        }
    }
    // The rows the first worker held when it died were handed again.
    assert!(handed_twice > 0 && handed_twice as u64 <= leased);
}

/// While the database is unavailable (`outage` runs, about 5 s), the inbox
/// answers 503 with `Retry-After`; a sender that retries gets every
/// delivery committed once it is back, and the worker hands each one.
pub async fn outage_answers_503_and_loses_nothing<F, Fut>(inbox: Inbox, outage: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    const N: usize = 60;
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let recorder = Arc::new(Recorder::default());
    let worker = inbox
        .worker(recorder.handler())
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let saw_503 = Arc::new(AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Notify::new());
    let sender = {
        let (saw_503, started) = (Arc::clone(&saw_503), Arc::clone(&started));
        tokio::spawn(async move {
            for i in 0..N {
                if i == 10 {
                    started.notify_one();
                }
                // A persistent sender: retry every 100 ms, at most 300 times.
                let mut stored = false;
                for _attempt in 0..300 {
                    let answer =
                        post(&client, addr, &format!("evt_{i}"), &format!("dlv_{i}")).await;
                    if answer.status == StatusCode::OK {
                        stored = true;
                        break;
                    }
                    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
                    assert!(answer.headers.contains_key(http::header::RETRY_AFTER));
                    assert_eq!(outcome(&answer), "unavailable");
                    saw_503.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(stored, "evt_{i} was never stored");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    started.notified().await;
    outage().await;
    sender.await.unwrap();
    assert!(
        saw_503.load(Ordering::Relaxed),
        "the outage never showed as a 503"
    );
    wait_until("every delivery is done after the outage", || async {
        inbox
            .counts()
            .await
            .map(|c| c.done == N as u64)
            .unwrap_or(false)
    })
    .await;
    worker.shutdown().await;
    for i in 0..N {
        assert_eq!(recorder.count(&format!("evt_{i}")), 1, "evt_{i}");
    }
}

/// A handler that never finishes is cut off after the worker's handler
/// timeout; each cut-off counts as an attempt, and the row ends dead.
pub async fn hung_handler_is_cut_off_and_ends_dead(inbox: Inbox) {
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let recorder = Arc::new(Recorder::default());
    recorder.hanging.lock().unwrap().push("evt_hung".to_owned());
    assert_eq!(
        post(&client, addr, "evt_hung", "dlv_hung").await.status,
        StatusCode::OK
    );
    let worker = inbox
        .worker(recorder.handler())
        .max_attempts(2)
        .handler_timeout(Duration::from_millis(50))
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("evt_hung is dead", || async {
        inbox.counts().await.unwrap().dead == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(
        (report.handed, report.failed, report.dead),
        (2, 2, 1),
        "{report:?}"
    );
    let dead = inbox.list(RowState::Dead, 1).await.unwrap();
    let error = dead[0].last_error.as_deref().unwrap_or("");
    assert!(error.contains("did not finish within"), "{error}");
    assert_eq!(recorder.count("evt_hung"), 2);
}

/// A graceful shutdown lets a handler in flight finish and settles its row;
/// a handler still running when the grace period ends is cut off, and its
/// row is returned as a failed attempt (not left leased).
pub async fn shutdown_settles_rows_in_flight(inbox: Inbox) {
    let client = client();
    let addr = serve_inbox(&inbox).await;
    let recorder = Arc::new(Recorder::default());
    recorder.slow.lock().unwrap().push("evt_slow".to_owned());
    recorder.hanging.lock().unwrap().push("evt_hung".to_owned());

    assert_eq!(
        post(&client, addr, "evt_slow", "dlv_slow").await.status,
        StatusCode::OK
    );
    let worker = inbox
        .worker(recorder.handler())
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("evt_slow is being handled", || async {
        recorder.count("evt_slow") == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(
        (report.handed, report.succeeded, report.cut_off),
        (1, 1, 0),
        "{report:?}"
    );
    let counts = inbox.counts().await.unwrap();
    assert_eq!((counts.done, counts.leased), (1, 0), "{counts:?}");

    assert_eq!(
        post(&client, addr, "evt_hung", "dlv_hung").await.status,
        StatusCode::OK
    );
    let worker = inbox
        .worker(recorder.handler())
        .shutdown_grace(Duration::from_millis(50))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("evt_hung is being handled", || async {
        recorder.count("evt_hung") == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!((report.handed, report.cut_off), (1, 1), "{report:?}");
    let failed = inbox.list(RowState::Failed, 10).await.unwrap();
    assert_eq!(
        failed.len(),
        1,
        "the cut-off row is returned, not left leased"
    );
    assert_eq!(
        (failed[0].event_id.as_str(), failed[0].attempts),
        ("evt_hung", 1)
    );
    let error = failed[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("shut down before the handler finished"),
        "{error}"
    );
}

/// Commits `event_id` straight through the inbox (no HTTP).
pub async fn enqueue(inbox: &Inbox, event_id: &str) {
    let body = TestDelivery::example(kendo_webhooks::CALL_UPLOADED)
        .event_id(event_id)
        .created_at("2026-03-05T12:00:00Z")
        .body();
    let delivery = Delivery::parse(body, &format!("dlv_{event_id}"), "call.uploaded")
        .expect("a valid delivery");
    inbox.enqueue(&delivery).await.expect("committed");
}

/// A batch worker hands whole batches to its handler, each delivery once;
/// a delivery whose result is an error fails alone (retried, then dead),
/// the rest of its batch is done.
pub async fn batch_worker_hands_batches_and_one_bad_row_fails_alone(inbox: Inbox) {
    const N: usize = 100;
    for i in 0..N {
        enqueue(&inbox, &format!("evt_{i}")).await;
    }
    let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let seen = Arc::clone(&batches);
    let worker = inbox
        .batch_worker(move |deliveries: Vec<Delivery>| {
            let seen = Arc::clone(&seen);
            async move {
                let ids: Vec<String> = deliveries.iter().map(|d| d.event_id().to_owned()).collect();
                let results = ids
                    .iter()
                    .map(|id| {
                        if id == "evt_7" {
                            Err(format!("the CRM refused {id}"))
                        } else {
                            Ok(())
                        }
                    })
                    .collect();
                seen.lock().unwrap().push(ids);
                results
            }
        })
        .batch_size(40)
        .max_attempts(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_until("all but one done, that one dead", || async {
        let counts = inbox.counts().await.unwrap();
        counts.done == N as u64 - 1 && counts.dead == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.succeeded, N as u64 - 1, "{report:?}");
    assert_eq!(report.failed, 2, "{report:?}");
    assert_eq!(report.dead, 1, "{report:?}");
    let batches = batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|b| b.len() == 40),
        "handed in batches of the batch size: {:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut handed: HashMap<&str, u32> = HashMap::new();
    for id in batches.iter().flatten() {
        *handed.entry(id).or_default() += 1;
    }
    for i in 0..N {
        let expected = if i == 7 { 2 } else { 1 };
        assert_eq!(
            handed.get(format!("evt_{i}").as_str()),
            Some(&expected),
            "evt_{i}"
        );
    }
    let dead = inbox.list(RowState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "evt_7");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("the CRM refused evt_7"),
        "{dead:?}"
    );
}

/// Retention: done rows older than the retention are purged (by
/// `purge_done` and by the worker option); pending, failed and dead rows
/// are kept whatever their age, and the counts follow.
pub async fn retention_purges_old_done_rows_only(inbox: Inbox) {
    for id in ["evt_done_1", "evt_done_2", "evt_dead"] {
        enqueue(&inbox, id).await;
    }
    let recorder = Arc::new(Recorder::default());
    recorder.failing.lock().unwrap().push("evt_dead".into());
    let worker = inbox
        .worker(recorder.handler())
        .max_attempts(1)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_until("two done, one dead", || async {
        let counts = inbox.counts().await.unwrap();
        counts.done == 2 && counts.dead == 1
    })
    .await;
    worker.shutdown().await;
    enqueue(&inbox, "evt_pending").await;
    tokio::time::sleep(Duration::from_millis(30)).await;

    // Not old enough yet: nothing purged.
    assert_eq!(
        inbox.purge_done(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(
        inbox.purge_done(Duration::from_millis(10)).await.unwrap(),
        2
    );
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.done, counts.dead, counts.pending),
        (0, 1, 1),
        "{counts:?}"
    );
    assert!(inbox.list(RowState::Done, 10).await.unwrap().is_empty());
    assert_eq!(
        inbox.list(RowState::Dead, 10).await.unwrap()[0].event_id,
        "evt_dead"
    );
    assert_eq!(
        inbox.list(RowState::Pending, 10).await.unwrap()[0].event_id,
        "evt_pending"
    );

    // The worker option: more done rows, and one that keeps failing.
    for i in 0..3 {
        enqueue(&inbox, &format!("evt_later_{i}")).await;
    }
    recorder.failing.lock().unwrap().push("evt_pending".into());
    let worker = inbox
        .worker(recorder.handler())
        .max_attempts(100)
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .poll_interval(Duration::from_millis(20))
        .purge_done_after(Duration::from_millis(1))
        .spawn();
    wait_until("the worker purged the three new done rows", || async {
        let counts = inbox.counts().await.unwrap();
        counts.done == 0 && counts.failed == 1 && counts.pending == 0
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.succeeded, 3, "{report:?}");
    assert!(report.purged >= 3, "{report:?}");
    let counts = inbox.counts().await.unwrap();
    assert_eq!((counts.failed, counts.dead), (1, 1), "{counts:?}");

    // After an outage: every failed and dead row due again at once.
    assert_eq!(inbox.requeue_all().await.unwrap(), 2);
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.failed, counts.dead),
        (2, 0, 0),
        "{counts:?}"
    );
    let pending = inbox.list(RowState::Pending, 10).await.unwrap();
    assert!(pending.iter().all(|row| row.attempts == 0), "{pending:?}");
}

/// Issue 17, #11: one handler that never returns does not hold the other
/// rows of its batch, nor rows committed later; at shutdown it is cut off
/// after the grace and its row settled as a failed attempt.
pub async fn one_hanging_handler_does_not_hold_the_others(inbox: Inbox) {
    for i in 0..20 {
        enqueue(&inbox, &format!("evt_{i}")).await;
    }
    let recorder = Arc::new(Recorder::default());
    recorder.hanging.lock().unwrap().push("evt_3".into());
    let worker = inbox
        .worker(recorder.handler())
        .batch_size(10)
        .max_attempts(1)
        .handler_timeout(Duration::from_secs(300))
        .shutdown_grace(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_until("every row but the hanging one done", || async {
        inbox.counts().await.unwrap().done == 19
    })
    .await;
    for i in 20..25 {
        enqueue(&inbox, &format!("evt_{i}")).await;
    }
    wait_until("rows committed later done too", || async {
        inbox.counts().await.unwrap().done == 24
    })
    .await;
    assert_eq!(recorder.count("evt_3"), 1);
    assert_eq!(inbox.counts().await.unwrap().leased, 1);
    // The hung row ran on a task of its own: its cut-off at shutdown (its
    // one attempt used, so dead) joins the worker's report.
    let report = worker.shutdown().await;
    assert_eq!(
        (
            report.handed,
            report.succeeded,
            report.failed,
            report.dead,
            report.cut_off
        ),
        (25, 24, 1, 1, 1),
        "{report:?}"
    );
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.done, counts.failed, counts.dead, counts.leased),
        (24, 0, 1, 0),
        "{counts:?}"
    );
}

/// A handler that runs longer than its row's lease keeps the row: the
/// worker renews the lease every third of it, so a second worker polling
/// the same inbox never takes the row over and nothing is handed twice.
pub async fn a_handler_longer_than_its_lease_is_handed_once(inbox: Inbox) {
    const N: usize = 4;
    for i in 0..N {
        enqueue(&inbox, &format!("evt_long_{i}")).await;
    }
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = |seen: Arc<Mutex<HashMap<String, u32>>>| {
        move |delivery: Delivery| {
            let seen = Arc::clone(&seen);
            async move {
                *seen
                    .lock()
                    .unwrap()
                    .entry(delivery.event_id().to_owned())
                    .or_default() += 1;
                // Two and a half leases.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                Ok::<(), String>(())
            }
        }
    };
    let workers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|owner| {
            inbox
                .worker(handler(Arc::clone(&seen)))
                .owner(owner)
                .lease(Duration::from_secs(1))
                .poll_interval(Duration::from_millis(10))
                .spawn()
        })
        .collect();
    wait_until("every long row is done", || async {
        inbox.counts().await.unwrap().done == N as u64
    })
    .await;
    let mut handed = 0;
    for worker in workers {
        let report = worker.shutdown().await;
        assert_eq!(report.failed, 0, "{report:?}");
        handed += report.handed;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), N, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "handed twice: {seen:?}");
    assert_eq!(handed, N as u64);
}

/// `Worker::run` works until its shutdown future completes, then reports
/// every hand-off: successes, failures and the rows it made dead.
pub async fn run_until_shutdown_reports_every_hand_off(inbox: Inbox) {
    for id in ["evt_run_1", "evt_run_2", "evt_run_3", "evt_run_bad"] {
        enqueue(&inbox, id).await;
    }
    let recorder = Arc::new(Recorder::default());
    recorder
        .failing
        .lock()
        .unwrap()
        .push("evt_run_bad".to_owned());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = inbox
        .worker(recorder.handler())
        .owner("run-until-shutdown")
        .max_attempts(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .poll_interval(Duration::from_millis(10));
    let shown = format!("{worker:?}");
    assert!(
        shown.contains("\"run-until-shutdown\"") && shown.contains("max_attempts: 2"),
        "{shown}"
    );
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_until("three rows done and one dead", || async {
        let counts = inbox.counts().await.unwrap();
        counts.done == 3 && counts.dead == 1
    })
    .await;
    assert!(!run.is_finished(), "the worker stopped before its shutdown");
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run returns once its shutdown completes")
        .unwrap();
    assert_eq!(
        (
            report.handed,
            report.succeeded,
            report.failed,
            report.dead,
            report.cut_off
        ),
        (5, 3, 2, 1, 0),
        "{report:?}"
    );
    assert_eq!(recorder.count("evt_run_bad"), 2);
}

/// A row whose worker died during its last attempt (its lease ended
/// unsettled) is made dead by the next claim that finds it, in the claim's
/// transaction, with the reason; it is never handed again. A fresh row
/// claimed in the same batch, on its last attempt too, is handed and done.
pub async fn a_row_out_of_attempts_after_a_lost_lease_dies_on_the_next_claim(inbox: Inbox) {
    enqueue(&inbox, "evt_lost").await;
    let first = Arc::new(Recorder::default());
    first.hanging.lock().unwrap().push("evt_lost".into());
    let worker = inbox
        .worker(first.handler())
        .max_attempts(1)
        .lease(Duration::from_secs(1))
        .shutdown_grace(Duration::from_secs(600))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("the only attempt is running", || async {
        first.count("evt_lost") == 1 && inbox.counts().await.unwrap().leased == 1
    })
    .await;
    // Dies holding the lease: nothing settles the row.
    worker.abort();
    // A new row, due at once; once the lease has ended both are claimed in
    // one batch.
    enqueue(&inbox, "evt_fresh").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let second = Arc::new(Recorder::default());
    let worker = inbox
        .worker(second.handler())
        .max_attempts(1)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(10))
        .spawn();
    wait_until("the lost row dead, the fresh one done", || async {
        let counts = inbox.counts().await.unwrap();
        counts.dead == 1 && counts.done == 1
    })
    .await;
    worker.shutdown().await;
    assert_eq!(second.count("evt_lost"), 0, "handed after its last attempt");
    assert_eq!(second.count("evt_fresh"), 1);
    let dead = inbox.list(RowState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("no attempts left"), "{error}");
    assert_eq!(dead[0].event_id, "evt_lost");
    let counts = inbox.counts().await.unwrap();
    assert_eq!((counts.leased, counts.done), (0, 1), "{counts:?}");
}
