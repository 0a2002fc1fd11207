-- A page of the verified delivery log, newest first: older than $1, of
-- outcome $2 and reason $3 when given, $4 rows. (`CAST`: Postgres must know
-- the type of a parameter that may be NULL.)
SELECT seq, delivery_id, event_id, event, outcome, reason, status, secret_label,
       latency_ms, received_ms
FROM deliveries WHERE seq < $1
  AND (CAST($2 AS TEXT) IS NULL OR outcome = $2) AND (CAST($3 AS TEXT) IS NULL OR reason = $3)
ORDER BY seq DESC LIMIT $4
