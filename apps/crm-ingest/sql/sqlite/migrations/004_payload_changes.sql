-- Version 4: each change in Kendo's payloads (a field of a known event
-- missing, of another type, or new), with its first example and how often it
-- was seen since.
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
