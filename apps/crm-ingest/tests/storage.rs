//! The CRM's tables on both backends: each write commits all or nothing,
//! and a database the outbox made its tables in before they were schema
//! version 8 migrates keeping its rows (and version 9 counts its calls and
//! trainings per quarter hour). Postgres: `kendo-test-support`,
//! SKIPPED without it (a failure under `CI`).

use crm_ingest::config::Database;
use crm_ingest::outcome::DeliveryOutcome;
use crm_ingest::storage::{LogBatch, LogRecord, Storage, UnverifiedEntry};
use kendo_test_support::postgres_server::PostgresServer;

/// One verified entry and one unverified attempt, so the log writes two
/// tables.
fn batch(id: &str) -> LogBatch {
    LogBatch {
        entries: vec![LogRecord {
            delivery_id: Some(id.to_owned()),
            event_id: Some(format!("evt_{id}")),
            event: Some("call.uploaded".to_owned()),
            outcome: DeliveryOutcome::Accepted,
            reason: None,
            status: 200,
            secret_label: None,
            latency_ms: Some(1.0),
            received_ms: 1_000,
            body: None,
            headers: None,
            answer: None,
        }],
        unverified: vec![UnverifiedEntry {
            delivery_id: Some(format!("forged_{id}")),
            reason: "invalid_signature",
            status: 401,
            received_ms: 1_000,
        }],
        rejections: Vec::new(),
    }
}

/// Writes a log batch whose second table refuses its insert, then one
/// that goes through: the first leaves nothing behind.
async fn a_log_batch_commits_all_or_nothing(storage: &Storage, refuse: impl AsyncFn(bool)) {
    refuse(true).await;
    storage
        .log(batch("dlv_1"), 100, 0)
        .await
        .expect_err("the unverified insert is refused");
    assert_eq!(
        storage.counts().await.expect("counts").deliveries,
        0,
        "the verified entry of a failed batch is rolled back"
    );
    refuse(false).await;
    storage.log(batch("dlv_2"), 100, 0).await.expect("written");
    assert_eq!(storage.counts().await.expect("counts").deliveries, 1);
}

#[tokio::test]
async fn sqlite_writes_a_log_batch_all_or_nothing() {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("crm.db");
    let storage = Storage::open(&Database::Sqlite(path.clone()))
        .await
        .expect("opened");
    let refuse = async |on: bool| {
        let conn = rusqlite::Connection::open(&path).expect("a connection");
        conn.execute_batch(if on {
            "CREATE TRIGGER refuse BEFORE INSERT ON unverified BEGIN
                 SELECT RAISE(ABORT, 'refused by the test');
             END;"
        } else {
            "DROP TRIGGER refuse;"
        })
        .expect("the trigger");
    };
    a_log_batch_commits_all_or_nothing(&storage, refuse).await;
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a connection");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn postgres_writes_a_log_batch_all_or_nothing() {
    let Some(pg) = PostgresServer::start_or_skip("crm storage log transaction") else {
        return;
    };
    let storage = Storage::open(&Database::Postgres(pg.url()))
        .await
        .expect("opened");
    let client = connect(&pg.url()).await;
    let refuse = async |on: bool| {
        client
            .batch_execute(if on {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN RAISE EXCEPTION 'refused by the test'; END $f$;
                 CREATE TRIGGER refuse BEFORE INSERT ON unverified
                     FOR EACH ROW EXECUTE FUNCTION refuse();"
            } else {
                "DROP TRIGGER refuse ON unverified;"
            })
            .await
            .expect("the trigger");
    };
    a_log_batch_commits_all_or_nothing(&storage, refuse).await;
}

#[tokio::test]
async fn a_postgres_version_7_database_migrates_keeping_its_rows_and_counting_them() {
    let Some(pg) = PostgresServer::start_or_skip("crm storage outbox migration") else {
        return;
    };
    let client = connect(&pg.url()).await;
    // Versions 1 to 7 as an earlier build left them, with the outbox tables
    // it created itself at start, and a row in them.
    client
        .batch_execute(concat!(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
            include_str!("../sql/postgres/migrations/001_crm_tables.sql"),
            include_str!("../sql/postgres/migrations/002_unverified_attempts.sql"),
            include_str!("../sql/postgres/migrations/003_dashboard_aggregates.sql"),
            include_str!("../sql/postgres/migrations/004_payload_changes.sql"),
            include_str!("../sql/common/migrations/005_raw_bodies.sql"),
            include_str!("../sql/postgres/migrations/006_search_indexes.sql"),
            include_str!("../sql/common/migrations/007_agent_indexes.sql"),
            include_str!("../sql/postgres/migrations/008_outbox.sql"),
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (1), (2), (3), (4), (5), (6), (7);
             INSERT INTO crm_outbox (target, event_id, event, body, next_ms, created_ms, since_ms)
                 VALUES ('zapier', 'evt_1', 'call.uploaded', '\\x7b7d', 5, 5, 5);
             INSERT INTO calls (event_id, call_id, is_test, received_ms)
                 VALUES ('evt_1', 'c1', false, 1800001), ('evt_2', 'c2', true, 1800002);
             INSERT INTO trainings (event_id, training_id, is_test, received_ms)
                 VALUES ('evt_3', 't1', false, 5);"
        ))
        .await
        .expect("a version 7 database");
    Storage::open(&Database::Postgres(pg.url()))
        .await
        .expect("migrated");
    let version: i32 = client
        .query_one("SELECT MAX(version) FROM crm_schema", &[])
        .await
        .expect("the version")
        .get(0);
    assert_eq!(version, 11);
    // Version 9 counted the real calls and trainings per quarter hour.
    let arrivals: Vec<(String, i64, i64)> = client
        .query("SELECT kind, quarter, n FROM arrivals ORDER BY kind", &[])
        .await
        .expect("the arrivals")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        arrivals,
        [("call".to_owned(), 2, 1), ("training".to_owned(), 0, 1)]
    );
    let kept: i64 = client
        .query_one("SELECT COUNT(*) FROM crm_outbox", &[])
        .await
        .expect("the outbox")
        .get(0);
    assert_eq!(kept, 1);
}

/// A verified entry whose body holds `word`.
fn entry(id: &str, word: &str) -> LogRecord {
    LogRecord {
        body: Some(format!("{{\"note\":\"{word}\"}}")),
        ..batch(id).entries.remove(0)
    }
}

async fn log(storage: &Storage, entries: Vec<LogRecord>, keep: usize) {
    let batch = LogBatch {
        entries,
        unverified: Vec::new(),
        rejections: Vec::new(),
    };
    storage.log(batch, keep, 0).await.expect("written");
}

/// Every page of a search for `q`, `limit` rows at a time: the delivery
/// ids, newest first.
async fn search_all(storage: &Storage, q: &str, limit: usize) -> Vec<String> {
    let filters = crm_ingest::search::filters::Filters::text(q);
    let (mut ids, mut before) = (Vec::new(), None);
    loop {
        let page = crm_ingest::search::query::deliveries(storage, &filters, before, limit)
            .await
            .expect("a page");
        ids.extend(page.iter().filter_map(|(_, row)| row.delivery_id.clone()));
        match page.last() {
            Some((seq, _)) if page.len() == limit => before = Some(*seq),
            _ => return ids,
        }
    }
}

/// The log's search finds each matching entry once, newest first, across
/// pages, whether the bulk indexer has reached it or not (SQLite indexes
/// the log about once a second; Postgres on every insert).
async fn a_log_search_finds_entries_indexed_or_not(storage: &Storage) {
    log(
        storage,
        vec![
            entry("dlv_a1", "needle"),
            entry("dlv_a2", "haystack"),
            entry("dlv_a3", "needle"),
            entry("dlv_a4", "NEEDLE"),
        ],
        100,
    )
    .await;
    storage.index_search().await.expect("indexed");
    log(
        storage,
        vec![
            entry("dlv_b1", "needle"),
            entry("dlv_b2", "haystack"),
            entry("dlv_b3", "a needle in it"),
        ],
        100,
    )
    .await;
    let expected = ["dlv_b3", "dlv_b1", "dlv_a4", "dlv_a3", "dlv_a1"];
    for limit in [1, 2, 3, 10] {
        assert_eq!(
            search_all(storage, "needle", limit).await,
            expected,
            "{limit} per page"
        );
    }
    storage.index_search().await.expect("indexed");
    assert_eq!(search_all(storage, "needle", 2).await, expected);
    assert_eq!(
        search_all(storage, "haystack", 1).await,
        ["dlv_b2", "dlv_a2"]
    );
}

#[tokio::test]
async fn sqlite_log_search_finds_entries_indexed_or_not() {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("crm.db");
    let storage = Storage::open(&Database::Sqlite(path.clone()))
        .await
        .expect("opened");
    a_log_search_finds_entries_indexed_or_not(&storage).await;
    let indexed = |conn: &rusqlite::Connection| -> (i64, i64) {
        conn.query_row("SELECT since, upto FROM search_indexed", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("the index's range")
    };
    let conn = rusqlite::Connection::open(&path).expect("a connection");
    assert_eq!(indexed(&conn), (0, 7), "all seven entries indexed");

    // Pruned entries stay in the index until they outnumber the live ones
    // four times over (at least a chunk each): then it is emptied and
    // refilled with the live ones only, and searches still find exactly
    // those.
    let chunk = crm_ingest::storage::SEARCH_INDEX_CHUNK;
    for round in 0..5 {
        let entries = (0..chunk)
            .map(|i| {
                entry(
                    &format!("dlv_{round}_{i}"),
                    if i % 100 == 0 { "needle" } else { "hay" },
                )
            })
            .collect();
        log(&storage, entries, 50).await;
        storage.index_search().await.expect("indexed");
    }
    let (since, upto) = indexed(&conn);
    let total = 7 + 5 * chunk;
    assert_eq!(upto, total, "every entry indexed");
    assert_eq!(
        since,
        total - 50,
        "emptied and refilled with the 50 live entries"
    );
    let found = search_all(&storage, "needle", 7).await;
    assert_eq!(found, ["dlv_4_1000"], "the one live match");

    // The rule, round by round, with more live entries than a chunk: the
    // index is emptied when its pruned entries (`since < seq < oldest`)
    // are more than four times its live ones (at least a chunk's worth).
    let (mut since, mut upto) = indexed(&conn);
    let mut resets = 0;
    for round in 0..20 {
        let entries = (0..1_200)
            .map(|i| {
                entry(
                    &format!("dlv_r{round}_{i}"),
                    if i == 7 { "needle" } else { "hay" },
                )
            })
            .collect();
        log(&storage, entries, 2_400).await;
        let (oldest, newest): (i64, i64) = conn
            .query_row("SELECT MIN(seq), MAX(seq) FROM deliveries", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("the live range");
        let stale = oldest - 1 - since;
        let live = (upto - (oldest - 1)).max(chunk);
        if stale > 4 * live {
            since = oldest - 1;
            resets += 1;
        }
        upto = newest;
        storage.index_search().await.expect("indexed");
        assert_eq!(indexed(&conn), (since, upto), "round {round}");
    }
    assert!(resets >= 2, "{resets} resets");
    let found = search_all(&storage, "needle", 4).await;
    assert_eq!(
        found,
        ["dlv_r19_7", "dlv_r18_7"],
        "the live matches, newest first"
    );
}

#[tokio::test]
async fn postgres_log_search_finds_entries_indexed_or_not() {
    let Some(pg) = PostgresServer::start_or_skip("crm storage log search") else {
        return;
    };
    let storage = Storage::open(&Database::Postgres(pg.url()))
        .await
        .expect("opened");
    a_log_search_finds_entries_indexed_or_not(&storage).await;
}
