-- Back to pending, due now, with a new retry window; ?2 NULL: every dead row.
UPDATE crm_outbox SET state = 'pending', next_ms = ?3, since_ms = ?3, settled_ms = NULL,
    failing_since_ms = NULL
WHERE target = ?1 AND state <> 'pending'
    AND (CASE WHEN ?2 IS NULL THEN state = 'dead' ELSE event_id = ?2 END)
