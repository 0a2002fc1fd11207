UPDATE crm_outbox SET state = 'dead', settled_ms = $3,
    last_answer = COALESCE(last_answer, 'not attempted') || ' (gave up: the destination kept failing for the whole retry window)'
WHERE target = $1 AND state = 'pending' AND since_ms <= $2 AND lease_until_ms <= $3
