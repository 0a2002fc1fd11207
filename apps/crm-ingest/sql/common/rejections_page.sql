-- The newest $1 per-minute rejection counts.
SELECT minute_ms, reason, status, count, last_delivery_id FROM rejections
ORDER BY minute_ms DESC, reason LIMIT $1
