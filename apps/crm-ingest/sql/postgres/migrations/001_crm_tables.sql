-- Version 1, as sql/sqlite/migrations/001_crm_tables.sql.
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
