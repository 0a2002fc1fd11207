SELECT seq, event_id, event, state, attempts, created_ms, settled_ms, next_ms, last_status, last_answer
FROM crm_outbox
WHERE target = $1 AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR event_id = $3)
ORDER BY seq DESC LIMIT $4
