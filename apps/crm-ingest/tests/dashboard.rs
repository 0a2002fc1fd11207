//! The dashboard's numbers, exactly: deliveries sent over real HTTP to the
//! app, then what [`dashboard::load`] reads from the same SQLite file (as a
//! second replica would) compared value by value: cards, chart data at the
//! histogram's bucket edges, the log (verified and unverified), tables,
//! search and filter. The page's HTML is tested in `crm_ingest.rs` and in
//! a real browser in `browser.rs`.

mod common;

use std::time::Duration;

use common::*;
use crm_ingest::backlog::BacklogHistory;
use crm_ingest::config::Database;
use crm_ingest::dashboard;
use crm_ingest::outcome::DeliveryOutcome;
use crm_ingest::storage::{now_ms, Storage};
use crm_ingest::views::UnprocessedState;
use hyper::StatusCode;
use kendo_webhooks::SignedDelivery;
use kendo_webhooks_inbox::Inbox;

/// (event id, agent id, agent name, AI score): scores on the histogram's
/// bucket edges.
const CALLS: &[(&str, &str, Option<&str>, &str)] = &[
    ("evt_1", "agent_ana", Some("Ana"), "0"),
    ("evt_2", "agent_ana", Some("Ana"), "9.5"),
    ("evt_3", "agent_ana", Some("Ana"), "10"),
    ("evt_4", "agent_ana", Some("Ana"), "89.9"),
    ("evt_5", "agent_x", None, "90"),
    ("evt_6", "agent_x", None, "100"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_exact_numbers_from_the_database() {
    let (_dir, db) = temp_db();
    let mut config = config(&db);
    // This test's own worker processes the inbox, failing one event.
    config.run_worker = false;
    let app = start(config).await;
    let http = Http::new();
    let addr = app.addr();
    let storage = Storage::open(&Database::Sqlite(db.clone()))
        .await
        .expect("the tables");
    let inbox = Inbox::open_sqlite(&db).await.expect("the inbox");
    let worker = {
        let storage = storage.clone();
        inbox
            .worker(move |delivery: kendo_webhooks::Delivery| {
                let storage = storage.clone();
                async move {
                    if delivery.event_id() == "evt_fail" {
                        return Err("the CRM is down".to_owned());
                    }
                    storage
                        .project(&delivery)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            })
            .max_attempts(100)
            .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
            .poll_interval(Duration::from_millis(20))
            .spawn()
    };
    let started = now_ms();

    for (i, (event_id, agent_id, agent_name, score)) in CALLS.iter().enumerate() {
        let body = call_body(event_id, agent_id, *agent_name, score, 60);
        let delivery = SignedDelivery::builder(body)
            .event("call.uploaded")
            .delivery_id(format!("dlv_{}", i + 1))
            .sign(SECRET);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
        if i == 0 {
            let retry = http.deliver(addr, &delivery).await;
            assert!(retry.is_duplicate(), "{:?}", retry.rejection());
        }
    }
    let failing = signed("call.uploaded", "evt_fail", "dlv_fail");
    assert_eq!(http.deliver(addr, &failing).await.status, StatusCode::OK);
    let training = signed("ai.training.completed", "evt_training", "dlv_training");
    assert_eq!(http.deliver(addr, &training).await.status, StatusCode::OK);
    let test = test_delivery("evt_test", "dlv_test");
    assert_eq!(http.deliver(addr, &test).await.status, StatusCode::OK);
    // Signed, but not an envelope: a verified rejection, in the log.
    let malformed = SignedDelivery::builder(&b"[1]"[..])
        .event("call.uploaded")
        .delivery_id("dlv_malformed")
        .sign(SECRET);
    assert_eq!(
        http.deliver(addr, &malformed).await.rejection(),
        Some("malformed_envelope")
    );
    for _ in 0..2 {
        let reply = http.deliver(addr, &forged(9)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        http.send(unsigned(addr, "dlv_unsigned")).await.rejection(),
        Some("missing_signature")
    );

    let backlog = BacklogHistory::default();
    let data = eventually("the worker and the log writer done", || async {
        let data = dashboard::load(&storage, &inbox, &backlog, None, None)
            .await
            .expect("the dashboard reads");
        let unverified = data.delivery_log.iter().filter(|e| !e.verified).count();
        // Everything settled: 6 calls and the test projected, the failing
        // one failed (not leased), every log entry written.
        (data.cards.calls_total == 6
            && data.test_events.len() == 1
            && (data.cards.waiting, data.cards.unprocessed) == (1, 1)
            && data.unprocessed.len() == 1
            && data.recent_trainings.len() == 1
            && data.delivery_log.len() == 14
            && unverified == 3)
            .then_some(data)
    })
    .await;
    let now = data.now_ms;

    // Cards: real calls only; the test delivery and the failed one apart.
    let cards = &data.cards;
    assert_eq!((cards.calls_today, cards.calls_total), (6, 6));
    assert_eq!(cards.scored_calls, 6);
    let average = cards.average_score.expect("an average");
    assert!((average - 299.4 / 6.0).abs() < 1e-9, "{average}");
    assert_eq!((cards.trainings_today, cards.trainings_total), (1, 1));
    let last = cards.last_delivery_ms.expect("a last delivery");
    assert!(
        (started..=now).contains(&last),
        "{last} in {started}..={now}"
    );
    assert_eq!((cards.waiting, cards.unprocessed), (1, 1), "the failed row");
    let oldest = cards.oldest_waiting_ms.expect("the failed row waits");
    assert!((started - 1_000..=now).contains(&oldest));

    // Charts.
    assert_eq!(data.score_histogram, [2, 1, 0, 0, 0, 0, 0, 0, 1, 2]);
    let sum = |f: fn(&crm_ingest::views::MinuteCounts) -> u64| {
        data.deliveries_per_minute.iter().map(f).sum::<u64>()
    };
    assert_eq!(
        sum(|m| m.accepted),
        9,
        "6 calls, the failing one, the training, the test"
    );
    assert_eq!(sum(|m| m.duplicate), 1);
    assert_eq!(sum(|m| m.rejected), 4, "1 malformed, 2 forged, 1 unsigned");
    for minute in &data.deliveries_per_minute {
        assert_eq!(minute.minute_ms % 60_000, 0);
        assert!((started - 60_000..=now).contains(&minute.minute_ms));
    }
    assert_eq!(
        reasons(&data),
        [
            ("invalid_signature", 2),
            ("malformed_envelope", 1),
            ("missing_signature", 1)
        ]
    );
    let malformed = log_entry(&data, "dlv_malformed");
    assert!(malformed.verified && malformed.outcome == DeliveryOutcome::Rejected);
    assert_eq!(malformed.status, 400);
    let last = data.backlog.last().expect("the backlog now");
    assert_eq!((last.at_ms, last.waiting), (now, 1));
    assert!(backlog.samples().is_empty(), "a page load stores no sample");

    // The log: verified and unverified, newest first.
    let log = &data.delivery_log;
    assert!(log.windows(2).all(|w| w[0].received_ms >= w[1].received_ms));
    let forged_attempts: Vec<_> = log
        .iter()
        .filter(|e| e.delivery_id.as_deref() == Some("forged-00009"))
        .collect();
    assert_eq!(forged_attempts.len(), 2);
    assert!(forged_attempts.iter().all(|e| !e.verified
        && e.outcome == DeliveryOutcome::Rejected
        && e.status == 401
        && e.reason.as_deref() == Some("invalid_signature")));
    let first = log
        .iter()
        .filter(|e| e.delivery_id.as_deref() == Some("dlv_1"))
        .map(|e| e.outcome)
        .collect::<Vec<_>>();
    assert_eq!(
        first,
        [DeliveryOutcome::Duplicate, DeliveryOutcome::Accepted]
    );
    assert!(log
        .iter()
        .filter(|e| e.verified)
        .all(|e| e.secret_label.as_deref() == Some("current")));

    // Tables.
    // Newest projection first (the worker projects a batch concurrently).
    let recent = &data.recent_calls;
    assert!(recent
        .windows(2)
        .all(|w| w[0].received_ms >= w[1].received_ms));
    let mut calls: Vec<&str> = recent.iter().map(|c| c.id.as_str()).collect();
    calls.sort_unstable();
    assert_eq!(
        calls,
        [
            "call_evt_1",
            "call_evt_2",
            "call_evt_3",
            "call_evt_4",
            "call_evt_5",
            "call_evt_6"
        ]
    );
    let six = recent.iter().find(|c| c.id == "call_evt_6").expect("evt_6");
    assert_eq!(six.ai_score, Some(100.0));
    assert_eq!(six.agent_name, None);
    assert_eq!(six.agent_id.as_deref(), Some("agent_x"));
    assert_eq!(six.duration_secs, Some(60.0));
    assert_eq!(six.event_id, "evt_6");
    let trainings: Vec<&str> = data
        .recent_trainings
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(trainings, ["training_evt_training"]);
    assert_eq!(data.recent_trainings[0].ai_score, Some(90.0));
    let tests: Vec<&str> = data
        .test_events
        .iter()
        .map(|t| t.event_id.as_str())
        .collect();
    assert_eq!(tests, ["evt_test"]);
    assert_eq!(data.test_events[0].event, "call.uploaded");
    let agents: Vec<(&str, u64)> = data
        .agent_scores
        .iter()
        .map(|a| (a.agent.as_str(), a.calls))
        .collect();
    assert_eq!(agents, [("Ana", 4), ("agent_x", 2)]);
    let ana = data.agent_scores[0].average_score.expect("scored");
    assert!((ana - 109.4 / 4.0).abs() < 1e-9, "{ana}");
    assert_eq!(data.agent_scores[1].average_score, Some(95.0));
    let failed = &data.unprocessed[0];
    assert_eq!(failed.state, UnprocessedState::Failed);
    assert_eq!(
        (failed.event_id.as_str(), failed.delivery_id.as_str()),
        ("evt_fail", "dlv_fail")
    );
    assert_eq!(failed.attempts, 1);
    let error = failed.last_error.as_deref().unwrap_or("");
    assert!(error.ends_with("the CRM is down"), "{error}");
    // The backoff's bound is an hour; the wait is drawn below it (full jitter).
    let next_try = failed.next_try_ms.expect("a next try");
    assert!(
        (now - 60_000..=now + 3_660_000).contains(&next_try),
        "{next_try}"
    );
    assert!(data.search.is_none());

    // Search: by the beginning of an id, in every table; `_` is literal.
    let search = |q: &'static str| {
        let (storage, inbox, backlog) = (storage.clone(), inbox.clone(), backlog.clone());
        async move {
            let data = dashboard::load(&storage, &inbox, &backlog, Some(q), None)
                .await
                .expect("the dashboard reads");
            let search = data.search.expect("a search");
            let mut hits: Vec<(String, String)> =
                search.hits.into_iter().map(|h| (h.kind, h.id)).collect();
            hits.sort();
            hits
        }
    };
    let pair = |kind: &str, id: &str| (kind.to_owned(), id.to_owned());
    assert_eq!(
        search("evt_2").await,
        [pair("call", "call_evt_2"), pair("delivery", "dlv_2")]
    );
    assert_eq!(search(" dlv_3 ").await, [pair("delivery", "dlv_3")]);
    assert_eq!(
        search("forged-00009").await,
        [
            pair("unverified", "forged-00009"),
            pair("unverified", "forged-00009")
        ]
    );
    assert_eq!(search("evt%").await, []);
    assert_eq!(
        search("dlv").await.len(),
        12,
        "9 accepted, 1 duplicate, 1 malformed, 1 unsigned"
    );
    assert_eq!(search("dlv_fai").await, [pair("delivery", "dlv_fail")]);

    // The log of one outcome.
    let rejected = dashboard::load(
        &storage,
        &inbox,
        &backlog,
        None,
        Some(DeliveryOutcome::Rejected),
    )
    .await
    .expect("the dashboard reads");
    assert_eq!(
        rejected.delivery_log.len(),
        4,
        "1 malformed, 2 forged, 1 unsigned"
    );
    assert!(rejected
        .delivery_log
        .iter()
        .all(|e| e.outcome == DeliveryOutcome::Rejected));
    assert_eq!(
        rejected.delivery_log.iter().filter(|e| e.verified).count(),
        1
    );
    let duplicates = dashboard::load(
        &storage,
        &inbox,
        &backlog,
        None,
        Some(DeliveryOutcome::Duplicate),
    )
    .await
    .expect("the dashboard reads");
    let ids: Vec<_> = duplicates
        .delivery_log
        .iter()
        .map(|e| (e.delivery_id.as_deref(), e.outcome))
        .collect();
    assert_eq!(ids, [(Some("dlv_1"), DeliveryOutcome::Duplicate)]);

    time_windows(&db, &storage, &inbox, &data).await;
    worker.shutdown().await;
    app.shutdown().await;
}

/// Rejections by reason, as (reason, count).
fn reasons(data: &crm_ingest::views::DashboardData) -> Vec<(&str, u64)> {
    data.rejections_by_reason
        .iter()
        .map(|r| (r.reason.as_str(), r.count))
        .collect()
}

fn log_entry<'a>(
    data: &'a crm_ingest::views::DashboardData,
    delivery_id: &str,
) -> &'a crm_ingest::views::LogRow {
    data.delivery_log
        .iter()
        .find(|e| e.delivery_id.as_deref() == Some(delivery_id))
        .unwrap_or_else(|| panic!("{delivery_id} in the log"))
}

/// Rows written long ago (straight into the file, as time would): the
/// per-minute chart keeps the last hour, rejections by reason the last 24
/// hours, "today" starts at midnight UTC.
async fn time_windows(
    db: &std::path::Path,
    storage: &Storage,
    inbox: &Inbox,
    before: &crm_ingest::views::DashboardData,
) {
    const MINUTE: i64 = 60_000;
    let now = now_ms();
    let midnight = now - now.rem_euclid(24 * 60 * MINUTE);
    let conn = rusqlite::Connection::open(db).expect("open the database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("a busy timeout");
    let delivery = |ms: i64, id: &str| {
        conn.execute(
            "INSERT INTO deliveries (delivery_id, outcome, status, received_ms)
             VALUES (?1, 'accepted', 200, ?2)",
            rusqlite::params![id, ms],
        )
        .expect("a delivery");
    };
    delivery(now - 30 * MINUTE, "dlv_half_hour_ago");
    delivery(now - 61 * MINUTE, "dlv_an_hour_ago");
    let rejection = |ms: i64, reason: &str, count: i64| {
        conn.execute(
            "INSERT INTO rejections (minute_ms, reason, status, count, last_ms)
             VALUES (?1, ?2, 400, ?3, ?1)",
            rusqlite::params![ms - ms.rem_euclid(MINUTE), reason, count],
        )
        .expect("a rejection count");
    };
    rejection(now - 120 * MINUTE, "stale_timestamp", 5);
    rejection(now - 25 * 60 * MINUTE, "payload_too_large", 7);
    let call = |ms: i64, event_id: &str| {
        conn.execute(
            "INSERT INTO calls (event_id, call_id, is_test, received_ms) VALUES (?1, ?1, 0, ?2)",
            rusqlite::params![event_id, ms],
        )
        .expect("a call");
    };
    call(midnight - 1, "evt_yesterday");
    // Just after midnight, unless that is under two minutes ago.
    let after_midnight = (now - midnight > 2 * MINUTE).then(|| call(midnight + 1, "evt_today"));

    let data = dashboard::load(storage, inbox, &BacklogHistory::default(), None, None)
        .await
        .expect("the dashboard reads");
    let accepted = |d: &crm_ingest::views::DashboardData| {
        d.deliveries_per_minute
            .iter()
            .map(|m| m.accepted)
            .sum::<u64>()
    };
    assert_eq!(accepted(&data), accepted(before) + 1, "the last hour only");
    assert_eq!(
        reasons(&data),
        [
            ("stale_timestamp", 5),
            ("invalid_signature", 2),
            ("malformed_envelope", 1),
            ("missing_signature", 1)
        ],
        "the last 24 hours only"
    );
    let today = u64::from(after_midnight.is_some());
    assert_eq!(data.cards.calls_total, before.cards.calls_total + 1 + today);
    assert_eq!(data.cards.calls_today, before.cards.calls_today + today);

    // "Today" is summed from quarter-hour counts (`arrivals`); in a zone
    // whose midnight is off the quarter hour (UTC+00:07 here), the rows
    // from midnight to the next quarter are counted one by one, the ones
    // just before midnight not at all.
    let zone =
        jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(7 * 60).expect("an offset"));
    let history = BacklogHistory::default();
    let load_in = || dashboard::load_in(&zone, storage, inbox, &history, None, None);
    let before = load_in().await.expect("the dashboard reads");
    let midnight = crm_ingest::local_day::local_midnight(&zone, now_ms());
    assert_ne!(
        midnight.rem_euclid(15 * MINUTE),
        0,
        "midnight is off the quarter hour"
    );
    let next_quarter = midnight - midnight.rem_euclid(15 * MINUTE) + 15 * MINUTE;
    call(midnight - 1, "evt_before_the_zone_s_midnight");
    call(midnight, "evt_at_the_zone_s_midnight");
    call(next_quarter - 1, "evt_before_the_next_quarter");
    call(next_quarter, "evt_at_the_next_quarter");
    let training = |ms: i64, event_id: &str| {
        conn.execute(
            "INSERT INTO trainings (event_id, training_id, is_test, received_ms) VALUES (?1, ?1, ?2, ?3)",
            rusqlite::params![event_id, i64::from(event_id.contains("test")), ms],
        )
        .expect("a training");
    };
    training(midnight - 1, "evt_training_before_midnight");
    training(midnight + 1, "evt_training_after_midnight");
    training(next_quarter + 1, "evt_training_next_quarter");
    training(next_quarter + 2, "evt_test_training");
    let after = load_in().await.expect("the dashboard reads");
    assert_eq!(after.cards.calls_today, before.cards.calls_today + 3);
    assert_eq!(after.cards.calls_total, before.cards.calls_total + 4);
    assert_eq!(
        after.cards.trainings_today,
        before.cards.trainings_today + 2
    );
    assert_eq!(
        after.cards.trainings_total,
        before.cards.trainings_total + 3
    );
}

/// Kendo's payload changes: each field of a known event that is missing,
/// of another type or new is kept once, with its first example and how
/// many deliveries showed it, and the page lists them; a delivery that
/// matches the typed schema adds nothing.
async fn payload_changes_on(database: Database) {
    let app = start(config_on(database.clone())).await;
    let addr = app.addr();
    let http = Http::new();
    let drifted = |event_id: &str, score: &str| {
        let body = serde_json::json!({
            "id": event_id, "event": "call.uploaded", "created_at": CREATED_AT,
            "data": {
                "callId": format!("call_{event_id}"), "agentId": "agent_ana", "agentName": "Ana",
                "userId": "user_ana", "teamMemberUserId": "member", "duration": 61,
                "aiScore": score, "timestamp": CREATED_AT, "sentiment": {"label": "warm"}
            }
        });
        SignedDelivery::builder(body.to_string())
            .event("call.uploaded")
            .delivery_id(format!("dlv_{event_id}"))
            .sign(SECRET)
    };
    for (event_id, score) in [("evt_drift_1", "n/a"), ("evt_drift_2", "later")] {
        let reply = http.deliver(addr, &drifted(event_id, score)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let clean = SignedDelivery::builder(call_body("evt_clean", "agent_bo", Some("Bo"), "70", 30))
        .event("call.uploaded")
        .delivery_id("dlv_clean")
        .sign(SECRET);
    assert_eq!(http.deliver(addr, &clean).await.status, StatusCode::OK);
    rows(&http, addr, "/api/calls", 3).await;

    let storage = Storage::open(&database).await.expect("the CRM's tables");
    let changes = eventually("two payload changes recorded", || async {
        let rows = storage
            .select(
                "read",
                "SELECT field, kind, example, event_id, count FROM payload_changes ORDER BY field",
                Vec::new(),
            )
            .await
            .expect("payload_changes");
        let rows: Vec<(String, String, Option<String>, String, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r[0].text().unwrap_or_default(),
                    r[1].text().unwrap_or_default(),
                    r[2].text(),
                    r[3].text().unwrap_or_default(),
                    r[4].count(),
                )
            })
            .collect();
        (rows.iter().map(|r| r.4).sum::<u64>() == 4).then_some(rows)
    })
    .await;
    assert_eq!(
        changes,
        vec![
            (
                "aiScore".to_owned(),
                "other_type".to_owned(),
                Some(r#""n/a""#.to_owned()),
                "evt_drift_1".to_owned(),
                2
            ),
            (
                "sentiment".to_owned(),
                "new".to_owned(),
                Some(r#"{"label":"warm"}"#.to_owned()),
                "evt_drift_1".to_owned(),
                2
            ),
        ]
    );
    let html = http.get(addr, "/").await.text();
    assert!(html.contains("Kendo payload changes"), "{html}");
    for shown in [
        "sentiment",
        "new field",
        "another type",
        "&quot;n/a&quot;",
        "evt_drift_1",
    ] {
        assert!(html.contains(shown), "{shown} missing from the page");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_changes_are_kept_with_their_first_example_on_sqlite() {
    let (_dir, db) = temp_db();
    payload_changes_on(Database::Sqlite(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_changes_are_kept_with_their_first_example_on_postgres() {
    let Some(pg) = kendo_test_support::postgres_server::PostgresServer::start_or_skip(
        "payload_changes_are_kept_with_their_first_example_on_postgres",
    ) else {
        return;
    };
    payload_changes_on(Database::Postgres(pg.url())).await;
}

/// The agent page's 30-day trend, per local day, from the quarter-hour
/// sums `agent_quarters` keeps: only real, scored calls of the last 30
/// local days (UTC+05:45 here), each in the day its local time falls in.
#[tokio::test]
async fn an_agent_s_trend_is_averaged_per_local_day() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&Database::Sqlite(db.clone()))
        .await
        .expect("opened");
    let zone =
        jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(345 * 60).expect("an offset"));
    let day = 86_400_000;
    let midnight = crm_ingest::local_day::local_midnight(&zone, now_ms());
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let call = |event_id: &str, ms: i64, score: Option<f64>, is_test: bool| {
        conn.execute(
            "INSERT INTO calls (event_id, call_id, agent_name, ai_score, is_test, received_ms)
             VALUES (?1, ?1, 'Trend Agent', ?2, ?3, ?4)",
            rusqlite::params![event_id, score, is_test, ms],
        )
        .expect("a call");
    };
    call("today_1", midnight + 60_000, Some(80.0), false);
    call("today_2", midnight + 2 * 3_600_000, Some(60.0), false);
    call("today_test", midnight + 60_000, Some(0.0), true);
    call("today_unscored", midnight + 60_000, None, false);
    call("yesterday_last_ms", midnight - 1, Some(40.0), false);
    call("three_days_ago", midnight - 3 * day + 1, Some(50.0), false);
    call("29_days_ago", midnight - 29 * day, Some(90.0), false);
    call("30_days_ago", midnight - 30 * day + 1, Some(10.0), false);
    let view = crm_ingest::agent::load(&storage, &zone, "Trend Agent")
        .await
        .expect("read")
        .expect("the agent has calls");
    let trend: Vec<(i64, f64, u64)> = view
        .trend
        .iter()
        .map(|d| (d.days_ago, d.average, d.calls))
        .collect();
    assert_eq!(
        trend,
        [(29, 90.0, 1), (3, 50.0, 1), (1, 40.0, 1), (0, 70.0, 2)]
    );
}
