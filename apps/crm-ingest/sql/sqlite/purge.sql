-- Delivered rows older than the retention (their attempts go first, see
-- purge_attempts.sql).
DELETE FROM crm_outbox WHERE state = 'delivered' AND settled_ms < ?1
