-- Fenced by the lease's owner and attempt: a replica whose lease ran out
-- changes nothing.
UPDATE crm_outbox SET state = ?4, next_ms = ?5, lease_owner = NULL, lease_until_ms = 0,
    settled_ms = CASE WHEN ?4 = 'pending' THEN NULL ELSE ?6 END,
    failing_since_ms = CASE WHEN ?4 = 'delivered' THEN NULL ELSE COALESCE(failing_since_ms, ?6) END,
    last_status = ?7, last_answer = ?8
WHERE seq = ?1 AND lease_owner = ?2 AND attempts = ?3
