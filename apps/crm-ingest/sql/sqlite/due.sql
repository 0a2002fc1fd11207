-- Whether one target has a due row: read first, so an idle lane never
-- takes SQLite's write lock (which the inbox's commits wait for).
SELECT EXISTS (
    SELECT 1 FROM crm_outbox
    WHERE target = ?1 AND state = 'pending' AND next_ms <= ?2 AND lease_until_ms <= ?2
)
