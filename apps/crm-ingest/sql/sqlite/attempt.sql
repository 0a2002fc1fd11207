INSERT INTO crm_outbox_attempts (outbox_seq, attempt, at_ms, status, answer, latency_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (outbox_seq, attempt) DO NOTHING
