-- Delivered rows older than the retention, and their attempts; how many rows.
WITH gone AS (
    DELETE FROM crm_outbox WHERE state = 'delivered' AND settled_ms < $1 RETURNING seq
), attempts AS (
    DELETE FROM crm_outbox_attempts WHERE outbox_seq IN (SELECT seq FROM gone)
)
SELECT COUNT(*) FROM gone
