-- Scale: bodies out of the key's b-tree, kept counts, done rows by age.
--
-- Version 1 kept every row, body inline, in a WITHOUT ROWID b-tree keyed by
-- the random event id: each insert landed on a random page of a b-tree of
-- ~400-byte rows, so inserts and lookups read ever more pages as the table
-- grew (SQLite's own guidance: WITHOUT ROWID suits small rows only). Now
-- rows are appended by rowid (the body sits at the end of the table) and
-- the event id lives in a small unique index of its own.
CREATE TABLE kendo_inbox_v2 (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    delivery_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'leased', 'done', 'failed', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    lease_owner TEXT,
    last_error  TEXT,
    body        BLOB NOT NULL
);
INSERT INTO kendo_inbox_v2 (event_id, delivery_id, event, received_at, state, attempts,
                            next_at, lease_owner, last_error, body)
    SELECT event_id, delivery_id, event, received_at, state, attempts, next_at,
           lease_owner, last_error, body
    FROM kendo_inbox ORDER BY received_at, event_id;
DROP TABLE kendo_inbox;
ALTER TABLE kendo_inbox_v2 RENAME TO kendo_inbox;

-- What workers look for: due rows, including leases that ended.
CREATE INDEX kendo_inbox_due ON kendo_inbox (next_at)
    WHERE state IN ('pending', 'leased', 'failed');
-- Listing the rows an operator looks at (dead, failed), oldest first.
CREATE INDEX kendo_inbox_trouble ON kendo_inbox (state, received_at)
    WHERE state IN ('failed', 'dead');
-- Retention: done rows by the time they were done.
CREATE INDEX kendo_inbox_done ON kendo_inbox (next_at) WHERE state = 'done';

-- Rows per state, kept by triggers, so counting never scans the table.
CREATE TABLE kendo_inbox_counts (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO kendo_inbox_counts (state, n)
    SELECT s.state, (SELECT count(*) FROM kendo_inbox WHERE kendo_inbox.state = s.state)
    FROM (SELECT 'pending' AS state UNION ALL SELECT 'leased' UNION ALL SELECT 'done'
          UNION ALL SELECT 'failed' UNION ALL SELECT 'dead') AS s;
CREATE TRIGGER kendo_inbox_counts_insert AFTER INSERT ON kendo_inbox BEGIN
    UPDATE kendo_inbox_counts SET n = n + 1 WHERE state = new.state;
END;
CREATE TRIGGER kendo_inbox_counts_delete AFTER DELETE ON kendo_inbox BEGIN
    UPDATE kendo_inbox_counts SET n = n - 1 WHERE state = old.state;
END;
CREATE TRIGGER kendo_inbox_counts_update AFTER UPDATE OF state ON kendo_inbox
    WHEN old.state <> new.state BEGIN
    UPDATE kendo_inbox_counts SET n = n - 1 WHERE state = old.state;
    UPDATE kendo_inbox_counts SET n = n + 1 WHERE state = new.state;
END;
