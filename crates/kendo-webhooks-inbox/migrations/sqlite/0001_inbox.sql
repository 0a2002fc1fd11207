-- The durable inbox: one row per signed event id.
-- Times are Unix milliseconds. `next_at` is when a pending or failed row is
-- due, when a leased row's lease ends, when a done or dead row settled.
CREATE TABLE kendo_inbox (
    event_id    TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    body        BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'leased', 'done', 'failed', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    lease_owner TEXT,
    last_error  TEXT
) WITHOUT ROWID;

-- What workers look for: due rows, including leases that ended.
CREATE INDEX kendo_inbox_due ON kendo_inbox (next_at)
    WHERE state IN ('pending', 'leased', 'failed');
-- Listing the rows an operator looks at (dead, failed), oldest first. Not
-- pending or done rows: every insert would pay for an index nobody reads.
CREATE INDEX kendo_inbox_trouble ON kendo_inbox (state, received_at)
    WHERE state IN ('failed', 'dead');
