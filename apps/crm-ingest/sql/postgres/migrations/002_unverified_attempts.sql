-- Version 2, as sql/sqlite/migrations/002_unverified_attempts.sql.
CREATE TABLE unverified (
    seq         BIGSERIAL PRIMARY KEY,
    delivery_id TEXT,
    reason      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX calls_received ON calls (received_ms);
CREATE INDEX deliveries_received ON deliveries (received_ms);
