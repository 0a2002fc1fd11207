-- A batch's outbox rows in one statement, run in the projection's
-- transaction (see src/storage/postgres.rs) or alone for the watched alerts.
INSERT INTO crm_outbox (target, event_id, event, body, next_ms, created_ms, since_ms)
SELECT t, e, n, b, $5, $5, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS u(t, e, n, b)
ON CONFLICT (target, event_id) DO NOTHING
