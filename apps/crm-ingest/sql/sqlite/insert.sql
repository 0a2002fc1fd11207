INSERT INTO crm_outbox (target, event_id, event, body, next_ms, created_ms, since_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)
ON CONFLICT (target, event_id) DO NOTHING
