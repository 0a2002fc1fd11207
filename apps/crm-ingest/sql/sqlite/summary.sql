SELECT target,
    SUM(state = 'delivered'), SUM(state = 'pending'), SUM(state = 'dead'),
    MIN(CASE WHEN state = 'pending' THEN failing_since_ms END),
    MAX(CASE WHEN state = 'delivered' THEN settled_ms END)
FROM crm_outbox GROUP BY target
