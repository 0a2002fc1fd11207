-- The oldest due rows of one target, leased to $3 until $4; replicas skip
-- each other's locked rows.
UPDATE crm_outbox SET attempts = attempts + 1, lease_owner = $3, lease_until_ms = $4
WHERE seq IN (
    SELECT seq FROM crm_outbox
    WHERE target = $1 AND state = 'pending' AND next_ms <= $2 AND lease_until_ms <= $2
    ORDER BY seq LIMIT $5
    FOR UPDATE SKIP LOCKED
)
RETURNING seq, event_id, body, attempts, since_ms
