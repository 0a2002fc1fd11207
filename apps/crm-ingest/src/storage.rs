//! The CRM's own tables, on SQLite or Postgres: the `calls` and `trainings`
//! projections (written by the inbox worker, idempotent on the event id),
//! the delivery log of verified deliveries (its own bound), and the
//! rejections of unverified requests: counted per reason and minute, plus
//! the newest attempts one by one in a table of their own (so a flood of
//! forgeries can never evict a verified entry).
//!
//! The inbox itself is the library's ([`kendo_webhooks_inbox`]), in the
//! same SQLite file or Postgres database.
//!
//! Every query is written once, with `$n` placeholders; SQLite gets them as
//! `?n`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kendo_webhooks::{Delivery, Event};
use kendo_webhooks_inbox::PostgresTls;
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

use crate::config::Database;
use crate::destinations::{NewRow as OutboxRow, Selector};

/// The text a search looks in, as one SQL expression (the same on both
/// backends, so an expression index matches it): every id, the agent's id
/// and name, the user and team member of a call or training
/// (`search_text!(call_id)`, `search_text!(training_id)`), or a log
/// entry's ids, event, outcome, reason and raw body
/// (`search_text!(deliveries)`).
#[macro_export]
macro_rules! search_text {
    (deliveries) => {
        "(COALESCE(delivery_id, '') || ' | ' || COALESCE(event_id, '') || ' | ' || \
          COALESCE(event, '') || ' | ' || outcome || ' | ' || COALESCE(reason, '') || ' | ' || \
          COALESCE(body, ''))"
    };
    ($id:ident) => {
        concat!(
            "(",
            stringify!($id),
            " || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || \
              COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || \
              COALESCE(team_member_user_id, ''))"
        )
    };
}

/// How long a SQLite statement waits for a lock held by another connection
/// (the inbox's writer shares the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one Postgres statement (or a connection).
const PG_TIMEOUT: Duration = Duration::from_secs(5);
/// Key of the advisory lock that serialises the CRM's migrations across
/// replicas.
const PG_MIGRATION_LOCK: i64 = 0x6372_6d31;

/// Schema version 1 (SQLite). Append new versions; never edit one.
const SQLITE_SCHEMA: &str = r"
CREATE TABLE calls (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT NOT NULL UNIQUE,
    call_id             TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            REAL,
    ai_score            REAL,
    timestamp           TEXT,
    is_test             INTEGER NOT NULL,
    received_ms         INTEGER NOT NULL
);
CREATE INDEX calls_test ON calls (is_test, seq);
CREATE TABLE trainings (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT NOT NULL UNIQUE,
    training_id         TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            REAL,
    ai_score            REAL,
    timestamp           TEXT,
    is_test             INTEGER NOT NULL,
    received_ms         INTEGER NOT NULL
);
CREATE INDEX trainings_test ON trainings (is_test, seq);
CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT,
    event_id     TEXT,
    event        TEXT,
    outcome      TEXT NOT NULL,
    reason       TEXT,
    status       INTEGER NOT NULL,
    secret_label TEXT,
    latency_ms   REAL,
    received_ms  INTEGER NOT NULL
);
CREATE INDEX deliveries_outcome ON deliveries (outcome, seq);
CREATE TABLE rejections (
    minute_ms        INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    status           INTEGER NOT NULL,
    count            INTEGER NOT NULL,
    last_delivery_id TEXT,
    last_ms          INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, reason)
);
";

/// Schema version 2 (SQLite): the newest unverified attempts one by one
/// (the dashboard shows a wrong-secret delivery as one row with its
/// attempts), and indexes for the dashboard's time windows.
const SQLITE_SCHEMA_2: &str = r"
CREATE TABLE unverified (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT,
    reason      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX calls_received ON calls (received_ms);
CREATE INDEX deliveries_received ON deliveries (received_ms);
";

/// Schema version 1 (Postgres), the same tables.
const POSTGRES_SCHEMA: &str = r"
CREATE TABLE calls (
    seq                 BIGSERIAL PRIMARY KEY,
    event_id            TEXT NOT NULL UNIQUE,
    call_id             TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            DOUBLE PRECISION,
    ai_score            DOUBLE PRECISION,
    timestamp           TEXT,
    is_test             BOOLEAN NOT NULL,
    received_ms         BIGINT NOT NULL
);
CREATE INDEX calls_test ON calls (is_test, seq);
CREATE TABLE trainings (
    seq                 BIGSERIAL PRIMARY KEY,
    event_id            TEXT NOT NULL UNIQUE,
    training_id         TEXT NOT NULL,
    agent_id            TEXT,
    agent_name          TEXT,
    user_id             TEXT,
    team_member_user_id TEXT,
    duration            DOUBLE PRECISION,
    ai_score            DOUBLE PRECISION,
    timestamp           TEXT,
    is_test             BOOLEAN NOT NULL,
    received_ms         BIGINT NOT NULL
);
CREATE INDEX trainings_test ON trainings (is_test, seq);
CREATE TABLE deliveries (
    seq          BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT,
    event_id     TEXT,
    event        TEXT,
    outcome      TEXT NOT NULL,
    reason       TEXT,
    status       INTEGER NOT NULL,
    secret_label TEXT,
    latency_ms   DOUBLE PRECISION,
    received_ms  BIGINT NOT NULL
);
CREATE INDEX deliveries_outcome ON deliveries (outcome, seq);
CREATE TABLE rejections (
    minute_ms        BIGINT NOT NULL,
    reason           TEXT NOT NULL,
    status           INTEGER NOT NULL,
    count            BIGINT NOT NULL,
    last_delivery_id TEXT,
    last_ms          BIGINT NOT NULL,
    PRIMARY KEY (minute_ms, reason)
);
";

/// Schema version 2 (Postgres), as [`SQLITE_SCHEMA_2`].
const POSTGRES_SCHEMA_2: &str = r"
CREATE TABLE unverified (
    seq         BIGSERIAL PRIMARY KEY,
    delivery_id TEXT,
    reason      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX calls_received ON calls (received_ms);
CREATE INDEX deliveries_received ON deliveries (received_ms);
";

/// Schema version 3 (SQLite): aggregates of the real calls kept by a
/// trigger (per agent: calls, scored calls, the sum of scores clamped to
/// ±1e9, the score histogram's ten buckets) and the number of real
/// trainings, so the dashboard never scans `calls` or `trainings`; filled
/// from the existing rows once.
const SQLITE_SCHEMA_3: &str = r"
CREATE TABLE call_agents (
    agent     TEXT PRIMARY KEY,
    calls     BIGINT NOT NULL DEFAULT 0,
    scored    BIGINT NOT NULL DEFAULT 0,
    score_sum REAL NOT NULL DEFAULT 0,
    b0 BIGINT NOT NULL DEFAULT 0,
    b1 BIGINT NOT NULL DEFAULT 0,
    b2 BIGINT NOT NULL DEFAULT 0,
    b3 BIGINT NOT NULL DEFAULT 0,
    b4 BIGINT NOT NULL DEFAULT 0,
    b5 BIGINT NOT NULL DEFAULT 0,
    b6 BIGINT NOT NULL DEFAULT 0,
    b7 BIGINT NOT NULL DEFAULT 0,
    b8 BIGINT NOT NULL DEFAULT 0,
    b9 BIGINT NOT NULL DEFAULT 0
);
INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
        COALESCE(SUM(MIN(MAX(ai_score, -1e9), 1e9)), 0),
        SUM(CASE WHEN ai_score < 10 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 10 AND ai_score < 20 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 20 AND ai_score < 30 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 30 AND ai_score < 40 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 40 AND ai_score < 50 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 50 AND ai_score < 60 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 60 AND ai_score < 70 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 70 AND ai_score < 80 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 80 AND ai_score < 90 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 90 THEN 1 ELSE 0 END)
    FROM calls WHERE NOT is_test GROUP BY 1;
CREATE TABLE crm_totals (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO crm_totals (name, n) SELECT 'trainings', COUNT(*) FROM trainings WHERE NOT is_test;
CREATE TRIGGER calls_aggregate AFTER INSERT ON calls WHEN NOT new.is_test BEGIN
    INSERT OR IGNORE INTO call_agents (agent) VALUES (COALESCE(new.agent_name, new.agent_id, 'unknown agent'));
    UPDATE call_agents SET calls = calls + 1,
        scored = scored + (new.ai_score IS NOT NULL),
        score_sum = score_sum + COALESCE(MIN(MAX(new.ai_score, -1e9), 1e9), 0),
        b0 = b0 + (CASE WHEN new.ai_score < 10 THEN 1 ELSE 0 END),
        b1 = b1 + (CASE WHEN new.ai_score >= 10 AND new.ai_score < 20 THEN 1 ELSE 0 END),
        b2 = b2 + (CASE WHEN new.ai_score >= 20 AND new.ai_score < 30 THEN 1 ELSE 0 END),
        b3 = b3 + (CASE WHEN new.ai_score >= 30 AND new.ai_score < 40 THEN 1 ELSE 0 END),
        b4 = b4 + (CASE WHEN new.ai_score >= 40 AND new.ai_score < 50 THEN 1 ELSE 0 END),
        b5 = b5 + (CASE WHEN new.ai_score >= 50 AND new.ai_score < 60 THEN 1 ELSE 0 END),
        b6 = b6 + (CASE WHEN new.ai_score >= 60 AND new.ai_score < 70 THEN 1 ELSE 0 END),
        b7 = b7 + (CASE WHEN new.ai_score >= 70 AND new.ai_score < 80 THEN 1 ELSE 0 END),
        b8 = b8 + (CASE WHEN new.ai_score >= 80 AND new.ai_score < 90 THEN 1 ELSE 0 END),
        b9 = b9 + (CASE WHEN new.ai_score >= 90 THEN 1 ELSE 0 END)
    WHERE agent = COALESCE(new.agent_name, new.agent_id, 'unknown agent');
END;
CREATE TRIGGER trainings_total AFTER INSERT ON trainings WHEN NOT new.is_test BEGIN
    UPDATE crm_totals SET n = n + 1 WHERE name = 'trainings';
END;
CREATE INDEX calls_received_real ON calls (is_test, received_ms);
CREATE INDEX trainings_received_real ON trainings (is_test, received_ms);
";

/// Schema version 3 (Postgres), as [`SQLITE_SCHEMA_3`], with
/// statement-level triggers (one upsert per agent per statement).
const POSTGRES_SCHEMA_3: &str = r"
CREATE TABLE call_agents (
    agent     TEXT PRIMARY KEY,
    calls     BIGINT NOT NULL DEFAULT 0,
    scored    BIGINT NOT NULL DEFAULT 0,
    score_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    b0 BIGINT NOT NULL DEFAULT 0,
    b1 BIGINT NOT NULL DEFAULT 0,
    b2 BIGINT NOT NULL DEFAULT 0,
    b3 BIGINT NOT NULL DEFAULT 0,
    b4 BIGINT NOT NULL DEFAULT 0,
    b5 BIGINT NOT NULL DEFAULT 0,
    b6 BIGINT NOT NULL DEFAULT 0,
    b7 BIGINT NOT NULL DEFAULT 0,
    b8 BIGINT NOT NULL DEFAULT 0,
    b9 BIGINT NOT NULL DEFAULT 0
);
CREATE FUNCTION call_agents_add() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
        SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
            COALESCE(SUM(LEAST(GREATEST(ai_score, -1e9), 1e9)), 0),
            SUM(CASE WHEN ai_score < 10 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 10 AND ai_score < 20 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 20 AND ai_score < 30 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 30 AND ai_score < 40 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 40 AND ai_score < 50 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 50 AND ai_score < 60 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 60 AND ai_score < 70 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 70 AND ai_score < 80 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 80 AND ai_score < 90 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 90 THEN 1 ELSE 0 END)
        FROM new_calls WHERE NOT is_test GROUP BY 1
        ON CONFLICT (agent) DO UPDATE SET calls = call_agents.calls + excluded.calls,
            scored = call_agents.scored + excluded.scored,
            score_sum = call_agents.score_sum + excluded.score_sum,
            b0 = call_agents.b0 + excluded.b0,
            b1 = call_agents.b1 + excluded.b1,
            b2 = call_agents.b2 + excluded.b2,
            b3 = call_agents.b3 + excluded.b3,
            b4 = call_agents.b4 + excluded.b4,
            b5 = call_agents.b5 + excluded.b5,
            b6 = call_agents.b6 + excluded.b6,
            b7 = call_agents.b7 + excluded.b7,
            b8 = call_agents.b8 + excluded.b8,
            b9 = call_agents.b9 + excluded.b9;
    RETURN NULL;
END $f$;
INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
        COALESCE(SUM(LEAST(GREATEST(ai_score, -1e9), 1e9)), 0),
        SUM(CASE WHEN ai_score < 10 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 10 AND ai_score < 20 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 20 AND ai_score < 30 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 30 AND ai_score < 40 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 40 AND ai_score < 50 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 50 AND ai_score < 60 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 60 AND ai_score < 70 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 70 AND ai_score < 80 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 80 AND ai_score < 90 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 90 THEN 1 ELSE 0 END)
    FROM calls WHERE NOT is_test GROUP BY 1;
CREATE TRIGGER calls_aggregate AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION call_agents_add();
CREATE TABLE crm_totals (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO crm_totals (name, n) SELECT 'trainings', COUNT(*) FROM trainings WHERE NOT is_test;
CREATE FUNCTION trainings_total() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE crm_totals SET n = n + (SELECT COUNT(*) FROM new_trainings WHERE NOT is_test)
        WHERE name = 'trainings';
    RETURN NULL;
END $f$;
CREATE TRIGGER trainings_total AFTER INSERT ON trainings REFERENCING NEW TABLE AS new_trainings
    FOR EACH STATEMENT EXECUTE FUNCTION trainings_total();
CREATE INDEX calls_received_real ON calls (is_test, received_ms);
CREATE INDEX trainings_received_real ON trainings (is_test, received_ms);
";

/// Schema version 4 (SQLite): each change in Kendo's payloads (a field of a
/// known event missing, of another type, or new), with its first example
/// and how often it was seen since.
const SQLITE_SCHEMA_4: &str = r"
CREATE TABLE payload_changes (
    event    TEXT NOT NULL,
    field    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    example  TEXT,
    event_id TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (event, field, kind)
);
";

/// Schema version 4 (Postgres), as [`SQLITE_SCHEMA_4`].
const POSTGRES_SCHEMA_4: &str = r"
CREATE TABLE payload_changes (
    event    TEXT NOT NULL,
    field    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    example  TEXT,
    event_id TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms  BIGINT NOT NULL,
    count    BIGINT NOT NULL,
    PRIMARY KEY (event, field, kind)
);
";

/// Schema version 5 (SQLite): each verified log entry keeps its raw body,
/// its headers and the answer given (the detail view and replay), and the
/// log is found by delivery and event id.
const SQLITE_SCHEMA_5: &str = r"
ALTER TABLE deliveries ADD COLUMN body TEXT;
ALTER TABLE deliveries ADD COLUMN headers TEXT;
ALTER TABLE deliveries ADD COLUMN answer TEXT;
CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id, seq);
CREATE INDEX deliveries_event_id ON deliveries (event_id, seq);
CREATE INDEX unverified_delivery_id ON unverified (delivery_id, seq);
";

/// Schema version 5 (Postgres), as [`SQLITE_SCHEMA_5`].
const POSTGRES_SCHEMA_5: &str = SQLITE_SCHEMA_5;

/// Schema version 6 (SQLite): substring search ([`crate::search`]) through
/// FTS5 trigram indexes holding rowids only (`content=''`), kept by
/// triggers, filled from the existing rows once.
const SQLITE_SCHEMA_6: &str = concat!(
    "CREATE VIRTUAL TABLE calls_search USING fts5(text, content='', tokenize='trigram');
INSERT INTO calls_search (rowid, text) SELECT seq, ",
    search_text!(call_id),
    " FROM calls;
CREATE TRIGGER calls_search_add AFTER INSERT ON calls BEGIN
    INSERT INTO calls_search (rowid, text) SELECT seq, ",
    search_text!(call_id),
    " FROM calls WHERE seq = new.seq;
END;
CREATE VIRTUAL TABLE trainings_search USING fts5(text, content='', tokenize='trigram');
INSERT INTO trainings_search (rowid, text) SELECT seq, ",
    search_text!(training_id),
    " FROM trainings;
CREATE TRIGGER trainings_search_add AFTER INSERT ON trainings BEGIN
    INSERT INTO trainings_search (rowid, text) SELECT seq, ",
    search_text!(training_id),
    " FROM trainings WHERE seq = new.seq;
END;
CREATE VIRTUAL TABLE deliveries_search
    USING fts5(text, content='', contentless_delete=1, tokenize='trigram');
INSERT INTO deliveries_search (rowid, text) SELECT seq, ",
    search_text!(deliveries),
    " FROM deliveries;
CREATE TRIGGER deliveries_search_add AFTER INSERT ON deliveries BEGIN
    INSERT INTO deliveries_search (rowid, text) SELECT seq, ",
    search_text!(deliveries),
    " FROM deliveries WHERE seq = new.seq;
END;
CREATE TRIGGER deliveries_search_remove AFTER DELETE ON deliveries BEGIN
    DELETE FROM deliveries_search WHERE rowid = old.seq;
END;
"
);

/// Schema version 6 (Postgres): trigram indexes (`pg_trgm`) on the same
/// search text, lower-cased; created only when the extension is available
/// (see [`migrate_pg`]), else searches scan.
const POSTGRES_SCHEMA_6: &str = concat!(
    "CREATE INDEX calls_search ON calls USING gin (lower(",
    search_text!(call_id),
    ") gin_trgm_ops);
CREATE INDEX trainings_search ON trainings USING gin (lower(",
    search_text!(training_id),
    ") gin_trgm_ops);
CREATE INDEX deliveries_search ON deliveries USING gin (lower(",
    search_text!(deliveries),
    ") gin_trgm_ops);"
);

/// Schema version 7 (SQLite and Postgres): one agent's calls and
/// trainings found by the agent key ([`crate::agent::AGENT_KEY`]).
const SCHEMA_7: &str = "
CREATE INDEX calls_agent ON calls
    (COALESCE(agent_name, agent_id, 'unknown agent'), is_test, received_ms);
CREATE INDEX trainings_agent ON trainings
    (COALESCE(agent_name, agent_id, 'unknown agent'), is_test, received_ms);
";

/// Adds one change's count, keeping its first example.
const UPSERT_PAYLOAD_CHANGE: &str = "INSERT INTO payload_changes
        (event, field, kind, example, event_id, first_ms, last_ms, count)
    VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
    ON CONFLICT (event, field, kind) DO UPDATE SET
        count = payload_changes.count + excluded.count, last_ms = excluded.last_ms";

/// The newest schema version; each version's script runs once, in order.
const SCHEMA_VERSION: i64 = 7;

/// Unverified attempts kept one by one (their per-minute counts are kept
/// for [`crate::config::AppConfig::rejections_keep_minutes`]).
pub const UNVERIFIED_KEEP: i64 = 1_000;

const INSERT_CALL: &str = "INSERT INTO calls (event_id, call_id, agent_id, agent_name, user_id,
     team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_id) DO NOTHING";
const INSERT_TRAINING: &str = "INSERT INTO trainings (event_id, training_id, agent_id,
     agent_name, user_id, team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_id) DO NOTHING";
const INSERT_DELIVERY: &str = "INSERT INTO deliveries (delivery_id, event_id, event, outcome,
     reason, status, secret_label, latency_ms, received_ms, body, headers, answer)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const UPSERT_REJECTIONS: &str = "INSERT INTO rejections (minute_ms, reason, status, count,
     last_delivery_id, last_ms) VALUES ($1, $2, $3, $4, $5, $6)
 ON CONFLICT (minute_ms, reason) DO UPDATE SET count = rejections.count + excluded.count,
     status = excluded.status, last_delivery_id = excluded.last_delivery_id,
     last_ms = excluded.last_ms";
const INSERT_UNVERIFIED: &str =
    "INSERT INTO unverified (delivery_id, reason, status, received_ms) VALUES ($1, $2, $3, $4)";
const PRUNE_UNVERIFIED: &str =
    "DELETE FROM unverified WHERE seq <= (SELECT MAX(seq) FROM unverified) - $1";
const PRUNE_DELIVERIES: &str =
    "DELETE FROM deliveries WHERE seq <= (SELECT MAX(seq) FROM deliveries) - $1";
const PRUNE_REJECTIONS: &str = "DELETE FROM rejections WHERE minute_ms < $1";
const COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM calls WHERE NOT is_test), (SELECT COUNT(*) FROM calls WHERE is_test),
    (SELECT COUNT(*) FROM trainings WHERE NOT is_test),
    (SELECT COUNT(*) FROM trainings WHERE is_test),
    (SELECT COUNT(*) FROM deliveries),
    (SELECT COALESCE(SUM(count), 0) FROM rejections),
    (SELECT MAX(received_ms) FROM deliveries)";

/// Which rows of `calls`/`trainings` a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TestFilter {
    /// Real deliveries only (the default: tests never count as calls).
    #[default]
    Exclude,
    /// Test deliveries (`_isTest`) only.
    Only,
    /// Both.
    Include,
}

impl TestFilter {
    /// Parses `exclude`, `only` or `include`.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "exclude" => Self::Exclude,
            "only" => Self::Only,
            "include" => Self::Include,
            _ => return None,
        })
    }

    /// Its name in a query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exclude => "exclude",
            Self::Only => "only",
            Self::Include => "include",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Exclude => " AND NOT is_test",
            Self::Only => " AND is_test",
            Self::Include => "",
        }
    }
}

/// One page of a list, newest first: rows older than `before` (a `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows per page.
    pub limit: usize,
    /// Only rows with a smaller sequence number (the cursor).
    pub before: Option<i64>,
}

/// Rows of a page and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    /// The rows, newest first.
    pub rows: Vec<T>,
    /// The cursor of the next page, when there are more rows.
    pub next: Option<i64>,
}

/// A row of `calls`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRow {
    pub event_id: String,
    pub call_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub user_id: Option<String>,
    pub team_member_user_id: Option<String>,
    pub duration: Option<f64>,
    pub ai_score: Option<f64>,
    pub timestamp: Option<String>,
    pub is_test: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub received_at: String,
}

/// A row of `trainings`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRow {
    pub event_id: String,
    pub training_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub user_id: Option<String>,
    pub team_member_user_id: Option<String>,
    pub duration: Option<f64>,
    pub ai_score: Option<f64>,
    pub timestamp: Option<String>,
    pub is_test: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub received_at: String,
}

/// A verified delivery in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event: Option<String>,
    /// `accepted`, `duplicate` or `failed` (see [`LogRecord`]).
    pub outcome: String,
    /// The layer's reason (`duplicate`, `in_flight`, …), or `inner_status`.
    pub reason: Option<String>,
    pub status: u16,
    pub secret_label: Option<String>,
    /// The inbox's time to commit, for accepted and failed entries.
    pub latency_ms: Option<f64>,
    pub received_at: String,
}

/// Unverified rejections of one reason in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionRow {
    /// The minute (RFC 3339, UTC).
    pub minute: String,
    pub reason: String,
    pub status: u16,
    pub count: u64,
    /// The delivery id of the last one (as sent, unverified).
    pub last_delivery_id: Option<String>,
}

/// Table sizes; tests are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableCounts {
    pub calls: u64,
    pub test_calls: u64,
    pub trainings: u64,
    pub test_trainings: u64,
    /// Verified delivery-log entries kept.
    pub deliveries: u64,
    /// Unverified rejections counted (kept minutes only).
    pub rejections: u64,
    /// When the newest verified delivery arrived (Unix ms).
    #[serde(skip)]
    pub last_delivery_ms: Option<i64>,
}

/// One verified delivery-log entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event: Option<String>,
    pub outcome: crate::outcome::DeliveryOutcome,
    pub reason: Option<&'static str>,
    pub status: u16,
    pub secret_label: Option<String>,
    pub latency_ms: Option<f64>,
    pub received_ms: i64,
    /// The verified raw body as received (see [`crate::captured`]).
    pub body: Option<String>,
    /// The request's headers, a JSON object, the signature shortened.
    pub headers: Option<String>,
    /// The answer given, a JSON object (`status`, `headers`, `body`).
    pub answer: Option<String>,
}

/// Unverified rejections of one reason in one minute, to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionCount {
    pub minute_ms: i64,
    pub reason: &'static str,
    pub status: u16,
    pub count: u64,
    pub last_delivery_id: Option<String>,
    pub last_ms: i64,
}

/// One unverified attempt to keep in the `unverified` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedEntry {
    pub delivery_id: Option<String>,
    pub reason: &'static str,
    pub status: u16,
    pub received_ms: i64,
}

/// What the delivery-log writer commits in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBatch {
    /// Verified entries.
    pub entries: Vec<LogRecord>,
    /// Unverified attempts, one by one.
    pub unverified: Vec<UnverifiedEntry>,
    /// Unverified attempts counted per minute and reason.
    pub rejections: Vec<RejectionCount>,
}

impl LogBatch {
    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.entries.len() + self.unverified.len() + self.rejections.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One value of a [`Storage::select`] row, whichever the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    /// An integer (or a real, truncated), else `None`.
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            #[allow(clippy::cast_possible_truncation)]
            Self::Real(v) => Some(*v as i64),
            _ => None,
        }
    }

    /// An integer, as a count (negative and NULL are 0).
    pub fn count(&self) -> u64 {
        self.int().and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
    }

    /// A number, else `None`.
    pub fn real(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Self::Int(v) => Some(*v as f64),
            Self::Real(v) => Some(*v),
            _ => None,
        }
    }

    /// Text, else `None`.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// A parameter of a [`Storage::select`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Compared with a `BIGINT`/`INTEGER` column such as `received_ms`.
    Int(i64),
    /// Compared with a `TEXT` column.
    Text(String),
    /// Compared with a `BOOLEAN` column (SQLite: 0 or 1).
    Bool(bool),
}

/// Where a delivery was projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Into `calls` (or already there).
    Call,
    /// Into `trainings` (or already there).
    Training,
    /// Nowhere: an event this app keeps no table for.
    Ignored,
}

/// A database operation failed; says which one and why.
#[derive(Debug)]
pub struct StorageError {
    what: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    pub(crate) fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Handle to the CRM's tables; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<Backend>,
    /// Which destinations and alerts take each projected event (issue 20).
    outbox: Option<Arc<Selector>>,
}

/// The database handles the destinations' outbox shares (issue 20).
pub(crate) enum Shared {
    /// The writer and reader connections.
    Sqlite {
        writer: Arc<Mutex<Connection>>,
        reader: Arc<Mutex<Connection>>,
    },
    /// A connection of its own, to the same database.
    Postgres(Box<Pg>),
}

enum Backend {
    Sqlite {
        writer: Arc<Mutex<Connection>>,
        reader: Arc<Mutex<Connection>>,
    },
    Postgres {
        /// Projections and the delivery log.
        writer: Box<Pg>,
        /// The dashboard and the API.
        reader: Box<Pg>,
    },
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &*self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        };
        f.debug_struct("Storage").field("backend", &name).finish()
    }
}

impl Storage {
    /// Opens (creating and migrating) the CRM's tables in `database`.
    pub async fn open(database: &Database) -> Result<Self, StorageError> {
        let backend = match database {
            Database::Sqlite(path) => open_sqlite(path.clone()).await?,
            Database::Postgres(url) => {
                let writer = Pg::connect(url).await?;
                // Reads on a connection of their own: a slow dashboard query
                // never holds up the projection or the delivery log, which
                // would otherwise wait behind it on one pipelined connection.
                let reader = Pg {
                    config: writer.config.clone(),
                    tls: writer.tls.clone(),
                    client: tokio::sync::Mutex::new(None),
                };
                Backend::Postgres {
                    writer: Box::new(writer),
                    reader: Box::new(reader),
                }
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
            outbox: None,
        })
    }

    /// Adds each projected event's outbox rows, as `selector` picks them,
    /// in the projection's transaction.
    #[must_use]
    pub fn with_outbox(mut self, selector: Selector) -> Self {
        self.outbox = Some(Arc::new(selector));
        self
    }

    /// What the destinations' outbox needs of the database.
    pub(crate) fn shared(&self) -> Shared {
        match &*self.backend {
            Backend::Sqlite { writer, reader } => Shared::Sqlite {
                writer: Arc::clone(writer),
                reader: Arc::clone(reader),
            },
            Backend::Postgres { writer, .. } => Shared::Postgres(Box::new(Pg {
                config: writer.config.clone(),
                tls: writer.tls.clone(),
                client: tokio::sync::Mutex::new(None),
            })),
        }
    }

    /// Whether the tables are in Postgres (else SQLite): the search
    /// ([`crate::search`]) reads each backend's own text index.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.backend, Backend::Postgres { .. })
    }

    /// Writes the projection of one verified delivery; a second call with
    /// the same event id changes nothing.
    pub async fn project(&self, delivery: &Delivery) -> Result<Projection, StorageError> {
        self.project_batch(std::slice::from_ref(delivery))
            .await
            .pop()
            .unwrap_or(Ok(Projection::Ignored))
    }

    /// Writes the projections of a batch of verified deliveries in one
    /// transaction (SQLite) or one statement per table (Postgres): one
    /// commit for the batch. When that fails, each delivery is written on
    /// its own, so one bad row fails alone. One result per delivery, in
    /// order; a second call with the same event ids changes nothing.
    pub async fn project_batch(
        &self,
        deliveries: &[Delivery],
    ) -> Vec<Result<Projection, StorageError>> {
        let results = self.project_rows(deliveries).await;
        // What Kendo's payloads changed is kept apart: a failure to record it
        // never fails a projection.
        let changes = payload_changes(deliveries, now_ms());
        if !changes.is_empty() {
            if let Err(error) = self.record_payload_changes(changes).await {
                tracing::warn!(%error, "could not record the Kendo payload changes of a batch");
            }
        }
        results
    }

    /// Adds each change's count to `payload_changes`, keeping the first
    /// example of each.
    pub async fn record_payload_changes(
        &self,
        changes: Vec<PayloadChange>,
    ) -> Result<(), StorageError> {
        const WHAT: &str = "could not record Kendo payload changes";
        match &*self.backend {
            Backend::Sqlite { writer, .. } => {
                run(writer, WHAT, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    {
                        let mut upsert = tx.prepare_cached(&sqlite_sql(UPSERT_PAYLOAD_CHANGE))?;
                        for c in &changes {
                            upsert.execute(rusqlite::params![
                                c.event, c.field, c.kind, c.example, c.event_id, c.first_ms,
                                c.count
                            ])?;
                        }
                    }
                    tx.commit()
                })
                .await
            }
            Backend::Postgres { writer: pg, .. } => {
                for c in &changes {
                    let example = c.example.as_deref().map(pg_text);
                    pg.execute(
                        WHAT,
                        UPSERT_PAYLOAD_CHANGE,
                        &[
                            &pg_text(&c.event),
                            &pg_text(&c.field),
                            &c.kind,
                            &example,
                            &pg_text(&c.event_id),
                            &c.first_ms,
                            &c.count,
                        ],
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }

    async fn project_rows(&self, deliveries: &[Delivery]) -> Vec<Result<Projection, StorageError>> {
        let now = now_ms();
        let mut calls = Vec::new();
        let mut trainings = Vec::new();
        // The destinations' outbox rows of each delivery (issue 20), written
        // in the projection's transaction.
        let forwarded: Vec<Vec<OutboxRow>> = deliveries
            .iter()
            .map(|delivery| {
                self.outbox
                    .as_ref()
                    .map_or_else(Vec::new, |o| o.rows(delivery))
            })
            .collect();
        let kinds: Vec<Projection> = deliveries
            .iter()
            .map(|delivery| match projected_row(delivery, now) {
                Some((Projection::Call, row)) => {
                    calls.push(row);
                    Projection::Call
                }
                Some((Projection::Training, row)) => {
                    trainings.push(row);
                    Projection::Training
                }
                _ => Projection::Ignored,
            })
            .collect();
        let outbox: Vec<OutboxRow> = forwarded.iter().flatten().cloned().collect();
        if calls.is_empty() && trainings.is_empty() && outbox.is_empty() {
            return kinds.into_iter().map(Ok).collect();
        }
        let calls = Arc::new(calls);
        let trainings = Arc::new(trainings);
        let outbox = Arc::new(outbox);
        match self.write_projections(&calls, &trainings, &outbox).await {
            Ok(()) => kinds.into_iter().map(Ok).collect(),
            Err(_) if deliveries.len() > 1 => {
                // One by one: the rows that can be written are, the bad one
                // fails alone.
                let (mut call_rows, mut training_rows) = (calls.iter(), trainings.iter());
                let mut results = Vec::with_capacity(kinds.len());
                for (kind, forwarded) in kinds.into_iter().zip(forwarded) {
                    let (mut c, mut t) = (Vec::new(), Vec::new());
                    match kind {
                        Projection::Call => c.extend(call_rows.next().cloned()),
                        Projection::Training => t.extend(training_rows.next().cloned()),
                        Projection::Ignored => {}
                    }
                    if c.is_empty() && t.is_empty() && forwarded.is_empty() {
                        results.push(Ok(kind));
                        continue;
                    }
                    let (c, t, o) = (Arc::new(c), Arc::new(t), Arc::new(forwarded));
                    results.push(self.write_projections(&c, &t, &o).await.map(|()| kind));
                }
                results
            }
            Err(error) => {
                let error = Arc::new(error);
                kinds
                    .into_iter()
                    .zip(&forwarded)
                    .map(|(kind, forwarded)| match kind {
                        Projection::Ignored if forwarded.is_empty() => Ok(kind),
                        _ => Err(StorageError::new(
                            "could not write the projection",
                            error.to_string(),
                        )),
                    })
                    .collect()
            }
        }
    }

    async fn write_projections(
        &self,
        calls: &Arc<Vec<ProjectedRow>>,
        trainings: &Arc<Vec<ProjectedRow>>,
        outbox: &Arc<Vec<OutboxRow>>,
    ) -> Result<(), StorageError> {
        const WHAT: &str = "could not write the projection";
        match &*self.backend {
            Backend::Sqlite { writer, .. } => {
                let (calls, trainings) = (Arc::clone(calls), Arc::clone(trainings));
                let outbox = Arc::clone(outbox);
                run(writer, WHAT, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    crate::destinations::sqlite::insert(&tx, &outbox, now_ms())?;
                    for (sql, rows) in [(INSERT_CALL, &calls), (INSERT_TRAINING, &trainings)] {
                        if rows.is_empty() {
                            continue;
                        }
                        let mut insert = tx.prepare_cached(&sqlite_sql(sql))?;
                        for r in rows.iter() {
                            insert.execute(rusqlite::params![
                                r.event_id,
                                r.id,
                                r.agent_id,
                                r.agent_name,
                                r.user_id,
                                r.team_member_user_id,
                                r.duration,
                                r.ai_score,
                                r.timestamp,
                                r.is_test,
                                r.received_ms
                            ])?;
                        }
                    }
                    tx.commit()
                })
                .await
            }
            Backend::Postgres { writer: pg, .. } => {
                // The outbox rows ride on the first statement as a CTE (or
                // alone when nothing is projected): committed together.
                let mut outbox = crate::destinations::postgres::OutboxCte::new(outbox, now_ms());
                for (table, id, rows) in [
                    ("calls", "call_id", calls),
                    ("trainings", "training_id", trainings),
                ] {
                    if rows.is_empty() {
                        continue;
                    }
                    // One statement per table: atomic, one commit.
                    let sql = format!(
                        "{cte}INSERT INTO {table} (event_id, {id}, agent_id, agent_name, user_id,
                             team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                             $5::text[], $6::text[], $7::float8[], $8::float8[], $9::text[],
                             $10::bool[], $11::int8[])
                         ON CONFLICT (event_id) DO NOTHING",
                        cte = outbox.cte(12),
                    );
                    // Postgres text cannot hold NUL: stored as U+FFFD.
                    let text = |f: fn(&ProjectedRow) -> Option<&String>| -> Vec<Option<String>> {
                        rows.iter().map(|r| f(r).map(|v| pg_text(v))).collect()
                    };
                    let event_ids: Vec<String> =
                        rows.iter().map(|r| pg_text(&r.event_id)).collect();
                    let ids: Vec<String> = rows.iter().map(|r| pg_text(&r.id)).collect();
                    let agent_ids = text(|r| r.agent_id.as_ref());
                    let agent_names = text(|r| r.agent_name.as_ref());
                    let user_ids = text(|r| r.user_id.as_ref());
                    let members = text(|r| r.team_member_user_id.as_ref());
                    let durations: Vec<Option<f64>> = rows.iter().map(|r| r.duration).collect();
                    let scores: Vec<Option<f64>> = rows.iter().map(|r| r.ai_score).collect();
                    let timestamps = text(|r| r.timestamp.as_ref());
                    let tests: Vec<bool> = rows.iter().map(|r| r.is_test).collect();
                    let received: Vec<i64> = rows.iter().map(|r| r.received_ms).collect();
                    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
                        &event_ids,
                        &ids,
                        &agent_ids,
                        &agent_names,
                        &user_ids,
                        &members,
                        &durations,
                        &scores,
                        &timestamps,
                        &tests,
                        &received,
                    ];
                    params.extend(outbox.params());
                    pg.execute(WHAT, &sql, &params).await?;
                    outbox.written();
                }
                if let Some(sql) = outbox.alone() {
                    pg.execute(WHAT, &sql, &outbox.params()).await?;
                }
                Ok(())
            }
        }
    }

    /// Appends verified entries (then keeps the newest `keep`) and
    /// unverified attempts (then keeps the newest [`UNVERIFIED_KEEP`]), adds
    /// the rejection counts (then drops minutes before
    /// `rejections_since_ms`).
    pub async fn log(
        &self,
        batch: LogBatch,
        keep: usize,
        rejections_since_ms: i64,
    ) -> Result<(), StorageError> {
        const WHAT: &str = "could not write the delivery log";
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let LogBatch {
            entries,
            unverified,
            rejections,
        } = batch;
        match &*self.backend {
            Backend::Sqlite { writer, .. } => {
                run(writer, WHAT, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    {
                        let mut insert = tx.prepare_cached(&sqlite_sql(INSERT_DELIVERY))?;
                        for e in &entries {
                            insert.execute(rusqlite::params![
                                e.delivery_id,
                                e.event_id,
                                e.event,
                                e.outcome.as_str(),
                                e.reason,
                                e.status,
                                e.secret_label,
                                e.latency_ms,
                                e.received_ms,
                                e.body,
                                e.headers,
                                e.answer
                            ])?;
                        }
                        let mut insert = tx.prepare_cached(&sqlite_sql(INSERT_UNVERIFIED))?;
                        for u in &unverified {
                            insert.execute(rusqlite::params![
                                u.delivery_id,
                                u.reason,
                                u.status,
                                u.received_ms
                            ])?;
                        }
                        let mut upsert = tx.prepare_cached(&sqlite_sql(UPSERT_REJECTIONS))?;
                        for r in &rejections {
                            upsert.execute(rusqlite::params![
                                r.minute_ms,
                                r.reason,
                                r.status,
                                i64::try_from(r.count).unwrap_or(i64::MAX),
                                r.last_delivery_id,
                                r.last_ms
                            ])?;
                        }
                    }
                    if !entries.is_empty() {
                        tx.execute(&sqlite_sql(PRUNE_DELIVERIES), [keep])?;
                    }
                    if !unverified.is_empty() {
                        tx.execute(&sqlite_sql(PRUNE_UNVERIFIED), [UNVERIFIED_KEEP])?;
                    }
                    if !rejections.is_empty() {
                        tx.execute(&sqlite_sql(PRUNE_REJECTIONS), [rejections_since_ms])?;
                    }
                    tx.commit()
                })
                .await
            }
            Backend::Postgres { writer: pg, .. } => {
                // One multi-row statement per table (each atomic, one
                // commit), then the prunes.
                if !entries.is_empty() {
                    let texts = |f: fn(&LogRecord) -> Option<&str>| -> Vec<Option<String>> {
                        entries.iter().map(|e| f(e).map(pg_text)).collect()
                    };
                    let delivery_ids = texts(|e| e.delivery_id.as_deref());
                    let event_ids = texts(|e| e.event_id.as_deref());
                    let events = texts(|e| e.event.as_deref());
                    let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
                    let reasons: Vec<Option<&str>> = entries.iter().map(|e| e.reason).collect();
                    let statuses: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
                    let labels = texts(|e| e.secret_label.as_deref());
                    let latencies: Vec<Option<f64>> =
                        entries.iter().map(|e| e.latency_ms).collect();
                    let received: Vec<i64> = entries.iter().map(|e| e.received_ms).collect();
                    let bodies = texts(|e| e.body.as_deref());
                    let headers = texts(|e| e.headers.as_deref());
                    let answers = texts(|e| e.answer.as_deref());
                    pg.execute(
                        WHAT,
                        "INSERT INTO deliveries (delivery_id, event_id, event, outcome, reason,
                             status, secret_label, latency_ms, received_ms, body, headers, answer)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                             $5::text[], $6::int4[], $7::text[], $8::float8[], $9::int8[],
                             $10::text[], $11::text[], $12::text[])",
                        &[
                            &delivery_ids,
                            &event_ids,
                            &events,
                            &outcomes,
                            &reasons,
                            &statuses,
                            &labels,
                            &latencies,
                            &received,
                            &bodies,
                            &headers,
                            &answers,
                        ],
                    )
                    .await?;
                }
                if !unverified.is_empty() {
                    let delivery_ids: Vec<Option<String>> = unverified
                        .iter()
                        .map(|u| u.delivery_id.as_deref().map(pg_text))
                        .collect();
                    let reasons: Vec<&str> = unverified.iter().map(|u| u.reason).collect();
                    let statuses: Vec<i32> =
                        unverified.iter().map(|u| i32::from(u.status)).collect();
                    let received: Vec<i64> = unverified.iter().map(|u| u.received_ms).collect();
                    pg.execute(
                        WHAT,
                        "INSERT INTO unverified (delivery_id, reason, status, received_ms)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[])",
                        &[&delivery_ids, &reasons, &statuses, &received],
                    )
                    .await?;
                }
                for r in &rejections {
                    let status = i32::from(r.status);
                    let count = i64::try_from(r.count).unwrap_or(i64::MAX);
                    let last = r.last_delivery_id.as_deref().map(pg_text);
                    pg.execute(
                        WHAT,
                        UPSERT_REJECTIONS,
                        &[&r.minute_ms, &r.reason, &status, &count, &last, &r.last_ms],
                    )
                    .await?;
                }
                if !entries.is_empty() {
                    pg.execute(WHAT, PRUNE_DELIVERIES, &[&keep]).await?;
                }
                if !unverified.is_empty() {
                    pg.execute(WHAT, PRUNE_UNVERIFIED, &[&UNVERIFIED_KEEP])
                        .await?;
                }
                if !rejections.is_empty() {
                    pg.execute(WHAT, PRUNE_REJECTIONS, &[&rejections_since_ms])
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// A page of calls, newest first.
    pub async fn calls(&self, page: Page, test: TestFilter) -> Result<Rows<CallRow>, StorageError> {
        let rows = self
            .projected("calls", "call_id", page, test, "could not read the calls")
            .await?;
        Ok(rows.map(|r| CallRow {
            event_id: r.event_id,
            call_id: r.id,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            user_id: r.user_id,
            team_member_user_id: r.team_member_user_id,
            duration: r.duration,
            ai_score: r.ai_score,
            timestamp: r.timestamp,
            is_test: r.is_test,
            received_at: format_ms(r.received_ms),
        }))
    }

    /// A page of trainings, newest first.
    pub async fn trainings(
        &self,
        page: Page,
        test: TestFilter,
    ) -> Result<Rows<TrainingRow>, StorageError> {
        let rows = self
            .projected(
                "trainings",
                "training_id",
                page,
                test,
                "could not read the trainings",
            )
            .await?;
        Ok(rows.map(|r| TrainingRow {
            event_id: r.event_id,
            training_id: r.id,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            user_id: r.user_id,
            team_member_user_id: r.team_member_user_id,
            duration: r.duration,
            ai_score: r.ai_score,
            timestamp: r.timestamp,
            is_test: r.is_test,
            received_at: format_ms(r.received_ms),
        }))
    }

    async fn projected(
        &self,
        table: &str,
        id: &str,
        page: Page,
        test: TestFilter,
        what: &'static str,
    ) -> Result<Rows<ProjectedRow>, StorageError> {
        let sql = format!(
            "SELECT seq, event_id, {id}, agent_id, agent_name, user_id, team_member_user_id,
                    duration, ai_score, timestamp, is_test, received_ms
             FROM {table} WHERE seq < $1{} ORDER BY seq DESC LIMIT {}",
            test.sql(),
            page.limit + 1
        );
        let before = page.before.unwrap_or(i64::MAX);
        let rows = match &*self.backend {
            Backend::Sqlite { reader, .. } => {
                run(reader, what, move |conn| {
                    let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                    let rows = stmt.query_map([before], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            ProjectedRow {
                                event_id: row.get(1)?,
                                id: row.get(2)?,
                                agent_id: row.get(3)?,
                                agent_name: row.get(4)?,
                                user_id: row.get(5)?,
                                team_member_user_id: row.get(6)?,
                                duration: row.get(7)?,
                                ai_score: row.get(8)?,
                                timestamp: row.get(9)?,
                                is_test: row.get(10)?,
                                received_ms: row.get(11)?,
                            },
                        ))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
            }
            Backend::Postgres { reader: pg, .. } => pg
                .query(what, &sql, &[&before])
                .await?
                .into_iter()
                .map(|row| {
                    (
                        row.get::<_, i64>(0),
                        ProjectedRow {
                            event_id: row.get(1),
                            id: row.get(2),
                            agent_id: row.get(3),
                            agent_name: row.get(4),
                            user_id: row.get(5),
                            team_member_user_id: row.get(6),
                            duration: row.get(7),
                            ai_score: row.get(8),
                            timestamp: row.get(9),
                            is_test: row.get(10),
                            received_ms: row.get(11),
                        },
                    )
                })
                .collect(),
        };
        Ok(paginate(rows, page.limit))
    }

    /// A page of the verified delivery log, newest first, optionally of
    /// one outcome and/or reason.
    pub async fn deliveries(
        &self,
        page: Page,
        outcome: Option<String>,
        reason: Option<String>,
    ) -> Result<Rows<DeliveryRow>, StorageError> {
        const WHAT: &str = "could not read the delivery log";
        let sql = format!(
            "SELECT seq, delivery_id, event_id, event, outcome, reason, status, secret_label,
                    latency_ms, received_ms
             FROM deliveries WHERE seq < $1
               AND ($2 IS NULL OR outcome = $2) AND ($3 IS NULL OR reason = $3)
             ORDER BY seq DESC LIMIT {}",
            page.limit + 1
        );
        let before = page.before.unwrap_or(i64::MAX);
        let rows = match &*self.backend {
            Backend::Sqlite { reader, .. } => {
                run(reader, WHAT, move |conn| {
                    let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                    let rows =
                        stmt.query_map(rusqlite::params![before, outcome, reason], |row| {
                            Ok((
                                row.get::<_, i64>(0)?,
                                DeliveryRow {
                                    delivery_id: row.get(1)?,
                                    event_id: row.get(2)?,
                                    event: row.get(3)?,
                                    outcome: row.get(4)?,
                                    reason: row.get(5)?,
                                    status: row.get(6)?,
                                    secret_label: row.get(7)?,
                                    latency_ms: row.get(8)?,
                                    received_at: format_ms(row.get(9)?),
                                },
                            ))
                        })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
            }
            Backend::Postgres { reader: pg, .. } => {
                // `$2::text`: Postgres must know the type of a parameter
                // that may be NULL.
                let sql = sql
                    .replace("$2 IS NULL", "$2::text IS NULL")
                    .replace("$3 IS NULL", "$3::text IS NULL");
                pg.query(WHAT, &sql, &[&before, &outcome, &reason])
                    .await?
                    .into_iter()
                    .map(|row| {
                        (
                            row.get::<_, i64>(0),
                            DeliveryRow {
                                delivery_id: row.get(1),
                                event_id: row.get(2),
                                event: row.get(3),
                                outcome: row.get(4),
                                reason: row.get(5),
                                status: u16::try_from(row.get::<_, i32>(6)).unwrap_or(0),
                                secret_label: row.get(7),
                                latency_ms: row.get(8),
                                received_at: format_ms(row.get(9)),
                            },
                        )
                    })
                    .collect()
            }
        };
        Ok(paginate(rows, page.limit))
    }

    /// The newest `limit` per-minute rejection counts.
    pub async fn rejections(&self, limit: usize) -> Result<Vec<RejectionRow>, StorageError> {
        const WHAT: &str = "could not read the rejections";
        let sql = format!(
            "SELECT minute_ms, reason, status, count, last_delivery_id FROM rejections
             ORDER BY minute_ms DESC, reason LIMIT {limit}"
        );
        let to_row =
            |minute: i64, reason: String, status: i64, count: i64, last: Option<String>| {
                RejectionRow {
                    minute: format_ms(minute),
                    reason,
                    status: u16::try_from(status).unwrap_or(0),
                    count: u64::try_from(count).unwrap_or(0),
                    last_delivery_id: last,
                }
            };
        match &*self.backend {
            Backend::Sqlite { reader, .. } => {
                run(reader, WHAT, move |conn| {
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map([], |row| {
                        Ok(to_row(
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?;
                    rows.collect()
                })
                .await
            }
            Backend::Postgres { reader: pg, .. } => Ok(pg
                .query(WHAT, &sql, &[])
                .await?
                .into_iter()
                .map(|row| {
                    to_row(
                        row.get(0),
                        row.get(1),
                        i64::from(row.get::<_, i32>(2)),
                        row.get(3),
                        row.get(4),
                    )
                })
                .collect()),
        }
    }

    /// Table sizes; doubles as the health check (it reads every table).
    pub async fn counts(&self) -> Result<TableCounts, StorageError> {
        const WHAT: &str = "could not read the database";
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        match &*self.backend {
            Backend::Sqlite { reader, .. } => {
                run(reader, WHAT, move |conn| {
                    conn.query_row(COUNTS, [], |row| {
                        Ok(TableCounts {
                            calls: n(row.get(0)?),
                            test_calls: n(row.get(1)?),
                            trainings: n(row.get(2)?),
                            test_trainings: n(row.get(3)?),
                            deliveries: n(row.get(4)?),
                            rejections: n(row.get(5)?),
                            last_delivery_ms: row.get(6)?,
                        })
                    })
                })
                .await
            }
            Backend::Postgres { reader: pg, .. } => {
                let sql = COUNTS.replace("SUM(count), 0)", "SUM(count), 0)::bigint");
                let row = pg.query(WHAT, &sql, &[]).await?;
                let row = row
                    .first()
                    .ok_or_else(|| StorageError::new(WHAT, "no row"))?;
                Ok(TableCounts {
                    calls: n(row.get(0)),
                    test_calls: n(row.get(1)),
                    trainings: n(row.get(2)),
                    test_trainings: n(row.get(3)),
                    deliveries: n(row.get(4)),
                    rejections: n(row.get(5)),
                    last_delivery_ms: row.get(6),
                })
            }
        }
    }
}

impl Storage {
    /// Runs one read-only query written once for both backends (`$n`
    /// placeholders; integers compared with `BIGINT` columns, sums cast to
    /// `BIGINT`, as Postgres sums integers to `NUMERIC`) and returns its rows
    /// as [`Cell`]s. The dashboard's queries go through here.
    pub async fn select(
        &self,
        what: &'static str,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Vec<Cell>>, StorageError> {
        match &*self.backend {
            Backend::Sqlite { reader, .. } => {
                let sql = sqlite_sql(sql);
                run(reader, what, move |conn| {
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let columns = stmt.column_count();
                    let values = params.into_iter().map(|p| match p {
                        Param::Int(v) => rusqlite::types::Value::Integer(v),
                        Param::Text(v) => rusqlite::types::Value::Text(v),
                        Param::Bool(v) => rusqlite::types::Value::Integer(v.into()),
                    });
                    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next()? {
                        let mut cells = Vec::with_capacity(columns);
                        for i in 0..columns {
                            use rusqlite::types::ValueRef;
                            cells.push(match row.get_ref(i)? {
                                ValueRef::Integer(v) => Cell::Int(v),
                                ValueRef::Real(v) => Cell::Real(v),
                                ValueRef::Text(v) => {
                                    Cell::Text(String::from_utf8_lossy(v).into_owned())
                                }
                                ValueRef::Null | ValueRef::Blob(_) => Cell::Null,
                            });
                        }
                        out.push(cells);
                    }
                    Ok(out)
                })
                .await
            }
            Backend::Postgres { reader: pg, .. } => {
                let params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = params
                    .into_iter()
                    .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
                        match p {
                            Param::Int(v) => Box::new(v),
                            Param::Text(v) => Box::new(v),
                            Param::Bool(v) => Box::new(v),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let rows = pg.query(what, sql, &refs).await?;
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| pg_cell(row, i).map_err(|e| StorageError::new(what, e)))
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

/// One Postgres value as a [`Cell`], by its column's type.
fn pg_cell(row: &tokio_postgres::Row, i: usize) -> Result<Cell, tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    Ok(if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?
            .map_or(Cell::Null, Cell::Real)
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)?
            .map_or(Cell::Null, |v| Cell::Real(v.into()))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else {
        // TEXT, VARCHAR, NAME; any other type fails here, saying which.
        row.try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text)
    })
}

/// Text as Postgres can store it: a NUL (which its `text` cannot hold)
/// becomes U+FFFD.
fn pg_text(value: &str) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{fffd}")
    } else {
        value.to_owned()
    }
}

/// The projection of a delivery: which table, and the row.
fn projected_row(delivery: &Delivery, received_ms: i64) -> Option<(Projection, ProjectedRow)> {
    let (projection, id, fields) = match delivery.event() {
        Event::CallUploaded(call) => (
            Projection::Call,
            call.call_id.clone(),
            (
                &call.agent_id,
                &call.agent_name,
                &call.user_id,
                &call.team_member_user_id,
                call.duration,
                call.ai_score,
                &call.timestamp,
            ),
        ),
        Event::AiTrainingCompleted(t) => (
            Projection::Training,
            t.training_id.clone(),
            (
                &t.agent_id,
                &t.agent_name,
                &t.user_id,
                &t.team_member_user_id,
                t.duration,
                t.ai_score,
                &t.timestamp,
            ),
        ),
        _ => return None,
    };
    let (agent_id, agent_name, user_id, member, duration, ai_score, timestamp) = fields;
    Some((
        projection,
        ProjectedRow {
            event_id: delivery.event_id().to_owned(),
            id,
            agent_id: agent_id.clone(),
            agent_name: agent_name.clone(),
            user_id: user_id.clone(),
            team_member_user_id: member.clone(),
            duration,
            ai_score,
            timestamp: timestamp.clone(),
            is_test: delivery.is_test(),
            received_ms,
        },
    ))
}

/// The columns `calls` and `trainings` share.
#[derive(Clone)]
struct ProjectedRow {
    event_id: String,
    id: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    user_id: Option<String>,
    team_member_user_id: Option<String>,
    duration: Option<f64>,
    ai_score: Option<f64>,
    timestamp: Option<String>,
    is_test: bool,
    received_ms: i64,
}

impl<T> Rows<T> {
    fn map<U>(self, f: impl FnMut(T) -> U) -> Rows<U> {
        Rows {
            rows: self.rows.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// `limit + 1` rows were asked for: the extra one says a next page exists.
/// One change in Kendo's payloads, seen in a batch: the first example and
/// how many deliveries showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadChange {
    /// The event name.
    pub event: String,
    /// The field of `data`.
    pub field: String,
    /// `missing`, `other_type` or `new`.
    pub kind: &'static str,
    /// The value as sent (JSON), for `other_type` and `new`.
    pub example: Option<String>,
    /// The event that showed it first.
    pub event_id: String,
    /// When it was seen first (Unix ms).
    pub first_ms: i64,
    /// How many deliveries showed it.
    pub count: i64,
}

/// The schema drift of `deliveries` (the library's
/// [`Delivery::schema_drift`]), one entry per event, field and kind.
fn payload_changes(deliveries: &[Delivery], now: i64) -> Vec<PayloadChange> {
    let mut changes: Vec<PayloadChange> = Vec::new();
    for delivery in deliveries {
        for drift in delivery.schema_drift() {
            let kind = drift.kind.as_str();
            match changes.iter_mut().find(|c| {
                c.event == delivery.event_name() && c.field == drift.field && c.kind == kind
            }) {
                Some(change) => change.count += 1,
                None => changes.push(PayloadChange {
                    event: delivery.event_name().to_owned(),
                    field: drift.field.clone(),
                    kind,
                    example: drift.example.clone(),
                    event_id: delivery.event_id().to_owned(),
                    first_ms: now,
                    count: 1,
                }),
            }
        }
    }
    changes
}

fn paginate<T>(mut rows: Vec<(i64, T)>, limit: usize) -> Rows<T> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Rows {
        rows: rows.into_iter().map(|(_, row)| row).collect(),
        next,
    }
}

/// A query's `$n` placeholders as SQLite's `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

async fn open_sqlite(path: PathBuf) -> Result<Backend, StorageError> {
    tokio::task::spawn_blocking(move || {
        let what = format!(
            "could not open the database {} (check CRM_DB: its directory must exist and be writable)",
            path.display()
        );
        let mut writer = open_connection(&path).map_err(|e| StorageError::new(&what, e))?;
        migrate_sqlite(&mut writer).map_err(|e| {
            StorageError::new(format!("could not migrate the database {}", path.display()), e)
        })?;
        let reader = open_connection(&path).map_err(|e| StorageError::new(&what, e))?;
        #[cfg(feature = "query-log")]
        let reader = {
            let mut reader = reader;
            reader.trace(Some(crate::query_log::record));
            reader
        };
        Ok(Backend::Sqlite {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    })
    .await
    .map_err(|e| StorageError::new("opening the database panicked", e))?
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // FULL: a projection is on disk before its inbox row is marked done.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A page cache that holds the hot indexes (SQLite's default is 2 MiB),
    // and reads through mmap.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "mmap_size", 256_i64 << 20)?;
    Ok(conn)
}

fn migrate_sqlite(conn: &mut Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let legacy: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox')",
        [],
        |row| row.get(0),
    )?;
    if legacy {
        return Err(
            "it was created by an earlier crm_ingest (with its own `inbox` table), \
                    whose schema this version does not migrate: point CRM_DB at a new file"
                .into(),
        );
    }
    tx.execute_batch("CREATE TABLE IF NOT EXISTS crm_schema (version INTEGER NOT NULL)")?;
    let version: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM crm_schema", [], |row| row.get(0))?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(format!(
            "it has CRM schema version {version}, newer than this app's {SCHEMA_VERSION}; \
             use a newer build"
        )
        .into());
    }
    for (v, script) in [
        (1, SQLITE_SCHEMA),
        (2, SQLITE_SCHEMA_2),
        (3, SQLITE_SCHEMA_3),
        (4, SQLITE_SCHEMA_4),
        (5, SQLITE_SCHEMA_5),
        (6, SQLITE_SCHEMA_6),
        (7, SCHEMA_7),
    ] {
        if version < v {
            tx.execute_batch(script)?;
            tx.execute("INSERT INTO crm_schema (version) VALUES (?1)", [v])?;
            tracing::info!(version = v, "CRM tables migrated (SQLite)");
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs `f` on the blocking pool with the connection locked.
pub(crate) async fn run<T, F>(
    conn: &Arc<Mutex<Connection>>,
    what: &'static str,
    f: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await
    .map_err(|e| StorageError::new(what, e))?
    .map_err(|e| StorageError::new(what, e))
}

/// One shared Postgres connection (statements are pipelined on it),
/// opened again on next use after it was lost.
pub(crate) struct Pg {
    config: tokio_postgres::Config,
    tls: PostgresTls,
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
}

impl Pg {
    async fn connect(url: &str) -> Result<Self, StorageError> {
        const WHAT: &str = "could not connect to Postgres (CRM_DATABASE_URL)";
        // TLS as the URL's sslmode and sslrootcert ask, like the inbox.
        let (url, tls) = PostgresTls::from_url(url).map_err(|e| StorageError::new(WHAT, e))?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| StorageError::new(WHAT, e))?;
        let mut client = connect_pg(&config, &tls)
            .await
            .map_err(|e| StorageError::new(WHAT, e))?;
        migrate_pg(&mut client)
            .await
            .map_err(|e| StorageError::new("could not migrate the CRM tables in Postgres", e))?;
        Ok(Self {
            config,
            tls,
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
        })
    }

    pub(crate) async fn client(
        &self,
        what: &'static str,
    ) -> Result<Arc<tokio_postgres::Client>, StorageError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        let client = Arc::new(
            connect_pg(&self.config, &self.tls)
                .await
                .map_err(|e| StorageError::new(what, e))?,
        );
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(crate) async fn execute(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        let client = self.client(what).await?;
        tokio::time::timeout(PG_TIMEOUT, client.execute(sql, params))
            .await
            .map_err(|e| StorageError::new(what, e))?
            .map_err(|e| StorageError::new(what, e))
    }

    pub(crate) async fn query(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let client = self.client(what).await?;
        tokio::time::timeout(PG_TIMEOUT, client.query(sql, params))
            .await
            .map_err(|e| StorageError::new(what, e))?
            .map_err(|e| StorageError::new(what, e))
    }
}

async fn connect_pg(
    config: &tokio_postgres::Config,
    tls: &PostgresTls,
) -> Result<tokio_postgres::Client, Box<dyn std::error::Error + Send + Sync>> {
    let (client, connection) =
        tokio::time::timeout(PG_TIMEOUT, config.connect(tls.clone())).await??;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "Postgres connection lost; reconnecting on next use");
        }
    });
    Ok(client)
}

async fn migrate_pg(
    client: &mut tokio_postgres::Client,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS crm_schema (version INTEGER NOT NULL)")
        .await?;
    let version: Option<i32> = tx
        .query_one("SELECT MAX(version) FROM crm_schema", &[])
        .await?
        .get(0);
    let version = i64::from(version.unwrap_or(0));
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the CRM schema is at version {version}, newer than this app's {SCHEMA_VERSION}; \
             use a newer build"
        )
        .into());
    }
    for (v, script) in [
        (1_i32, POSTGRES_SCHEMA),
        (2, POSTGRES_SCHEMA_2),
        (3, POSTGRES_SCHEMA_3),
        (4, POSTGRES_SCHEMA_4),
        (5, POSTGRES_SCHEMA_5),
        (6, POSTGRES_SCHEMA_6),
        (7, SCHEMA_7),
    ] {
        if version < i64::from(v) {
            if v == 6 && !trigram_available(&mut tx).await {
                tracing::warn!(
                    "the pg_trgm extension is not available (CREATE EXTENSION pg_trgm failed): \
                     searches scan their table instead of an index; install it (Debian's \
                     postgresql package ships it) or have a superuser run CREATE EXTENSION \
                     pg_trgm, then drop the CRM's schema version 6 row to build the indexes"
                );
            } else {
                tx.batch_execute(script).await?;
            }
            tx.execute("INSERT INTO crm_schema (version) VALUES ($1)", &[&v])
                .await?;
            tracing::info!(version = v, "CRM tables migrated (Postgres)");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Whether `pg_trgm` is (or could be made) available, in a savepoint so a
/// refusal leaves the migration's transaction usable.
async fn trigram_available(tx: &mut tokio_postgres::Transaction<'_>) -> bool {
    let Ok(savepoint) = tx.savepoint("pg_trgm").await else {
        return false;
    };
    match savepoint
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .await
    {
        Ok(()) => savepoint.commit().await.is_ok(),
        Err(error) => {
            tracing::debug!(%error, "CREATE EXTENSION pg_trgm");
            let _ = savepoint.rollback().await;
            false
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with exactly three
/// fractional digits, e.g. `2026-03-05T12:00:00.120Z`.
pub fn format_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("SELECT MAX(version) FROM crm_schema", [], |row| row.get(0))
            .expect("a version")
    }

    #[test]
    fn a_version_1_database_is_migrated_to_the_newest_keeping_its_rows() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SQLITE_SCHEMA).expect("version 1");
        conn.execute_batch(
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (1);
             INSERT INTO calls (event_id, call_id, is_test, received_ms) VALUES ('e1', 'c1', 0, 5);",
        )
        .expect("a version 1 database");
        migrate_sqlite(&mut conn).expect("migrated");
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM calls", [], |row| row.get(0))
            .expect("calls");
        assert_eq!(kept, 1);
        conn.execute(
            &sqlite_sql(INSERT_UNVERIFIED),
            rusqlite::params![None::<String>, "invalid_signature", 401, 6],
        )
        .expect("the unverified table exists");
        // Running it again changes nothing.
        migrate_sqlite(&mut conn).expect("migrated again");
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_with_what_to_do() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE crm_schema (version INTEGER NOT NULL);
             INSERT INTO crm_schema (version) VALUES (99);",
        )
        .expect("a newer database");
        let error = migrate_sqlite(&mut conn).expect_err("refused").to_string();
        assert!(error.contains("version 99"), "{error}");
        assert!(error.contains("use a newer build"), "{error}");
    }
}
