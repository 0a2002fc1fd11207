-- Fenced by the lease's owner and attempt; the attempt is recorded only
-- when the settle took.
WITH settled AS (
    UPDATE crm_outbox SET state = $4, next_ms = $5, lease_owner = NULL, lease_until_ms = 0,
        settled_ms = CASE WHEN $4 = 'pending' THEN NULL ELSE $6::bigint END,
        failing_since_ms = CASE WHEN $4 = 'delivered' THEN NULL ELSE COALESCE(failing_since_ms, $6::bigint) END,
        last_status = $7, last_answer = $8
    WHERE seq = $1 AND lease_owner = $2 AND attempts = $3
    RETURNING seq
)
INSERT INTO crm_outbox_attempts (outbox_seq, attempt, at_ms, status, answer, latency_ms)
SELECT seq, $3, $6, $7, $8, $9 FROM settled
ON CONFLICT (outbox_seq, attempt) DO NOTHING
