-- Version 1: the projections (`calls`, `trainings`), the verified delivery
-- log (`deliveries`) and the unverified rejections counted per minute.
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
