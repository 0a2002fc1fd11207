-- Version 5 (SQLite and Postgres): each verified log entry keeps its raw
-- body, its headers and the answer given (the detail view and replay), and
-- the log is found by delivery and event id.
ALTER TABLE deliveries ADD COLUMN body TEXT;
ALTER TABLE deliveries ADD COLUMN headers TEXT;
ALTER TABLE deliveries ADD COLUMN answer TEXT;
CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id, seq);
CREATE INDEX deliveries_event_id ON deliveries (event_id, seq);
CREATE INDEX unverified_delivery_id ON unverified (delivery_id, seq);
