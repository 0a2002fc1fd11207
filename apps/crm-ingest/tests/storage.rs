//! The CRM's tables on both backends: each write commits all or nothing,
//! and a database the outbox made its tables in before they were schema
//! version 8 migrates keeping its rows. Postgres: `kendo-test-support`,
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
async fn a_postgres_database_whose_outbox_predates_version_8_migrates_keeping_its_rows() {
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
                 VALUES ('zapier', 'evt_1', 'call.uploaded', '\\x7b7d', 5, 5, 5);"
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
    assert_eq!(version, 8);
    let kept: i64 = client
        .query_one("SELECT COUNT(*) FROM crm_outbox", &[])
        .await
        .expect("the outbox")
        .get(0);
    assert_eq!(kept, 1);
}
