SELECT outbox_seq, attempt, at_ms, status, answer, latency_ms
FROM crm_outbox_attempts WHERE outbox_seq = ?1 ORDER BY attempt
