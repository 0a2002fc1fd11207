-- Version 8: the destinations' outbox (issue 20): one row per target and
-- Kendo event, written in the projection's transaction; its attempts one by
-- one. `IF NOT EXISTS`: before version 8 the outbox created these tables
-- itself, so a database may have them already.
CREATE TABLE IF NOT EXISTS crm_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    target           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             BLOB NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_ms          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until_ms   INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    since_ms         INTEGER NOT NULL,
    settled_ms       INTEGER,
    failing_since_ms INTEGER,
    last_status      INTEGER,
    last_answer      TEXT,
    UNIQUE (target, event_id)
);
CREATE INDEX IF NOT EXISTS crm_outbox_due ON crm_outbox (target, state, seq);
CREATE TABLE IF NOT EXISTS crm_outbox_attempts (
    outbox_seq INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    status     INTEGER,
    answer     TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    PRIMARY KEY (outbox_seq, attempt)
);
