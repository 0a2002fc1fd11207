-- Version 2: the newest unverified attempts one by one (the dashboard shows a
-- wrong-secret delivery as one row with its attempts), and indexes for the
-- dashboard's time windows.
CREATE TABLE unverified (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT,
    reason      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX calls_received ON calls (received_ms);
CREATE INDEX deliveries_received ON deliveries (received_ms);
