SELECT target,
    COUNT(*) FILTER (WHERE state = 'delivered'), COUNT(*) FILTER (WHERE state = 'pending'),
    COUNT(*) FILTER (WHERE state = 'dead'),
    MIN(failing_since_ms) FILTER (WHERE state = 'pending'),
    MAX(settled_ms) FILTER (WHERE state = 'delivered')
FROM crm_outbox GROUP BY target
