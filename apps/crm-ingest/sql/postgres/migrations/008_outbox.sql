-- Version 8, as sql/sqlite/migrations/008_outbox.sql (`IF NOT EXISTS` for the
-- same reason).
CREATE TABLE IF NOT EXISTS crm_outbox (
    seq              BIGSERIAL PRIMARY KEY,
    target           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             BYTEA NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_ms          BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until_ms   BIGINT NOT NULL DEFAULT 0,
    created_ms       BIGINT NOT NULL,
    since_ms         BIGINT NOT NULL,
    settled_ms       BIGINT,
    failing_since_ms BIGINT,
    last_status      INTEGER,
    last_answer      TEXT,
    UNIQUE (target, event_id)
);
CREATE INDEX IF NOT EXISTS crm_outbox_due ON crm_outbox (target, state, seq);
CREATE TABLE IF NOT EXISTS crm_outbox_attempts (
    outbox_seq BIGINT NOT NULL,
    attempt    INTEGER NOT NULL,
    at_ms      BIGINT NOT NULL,
    status     INTEGER,
    answer     TEXT NOT NULL,
    latency_ms BIGINT NOT NULL,
    PRIMARY KEY (outbox_seq, attempt)
);
