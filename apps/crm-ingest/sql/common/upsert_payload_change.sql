-- Adds one change's count to `payload_changes`, keeping its first example.
INSERT INTO payload_changes (event, field, kind, example, event_id, first_ms, last_ms, count)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
ON CONFLICT (event, field, kind) DO UPDATE SET
    count = payload_changes.count + excluded.count, last_ms = excluded.last_ms
