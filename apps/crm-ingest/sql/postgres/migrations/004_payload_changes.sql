-- Version 4, as sql/sqlite/migrations/004_payload_changes.sql.
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
