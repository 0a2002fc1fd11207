-- Adds unverified rejections of one reason in one minute.
INSERT INTO rejections (minute_ms, reason, status, count, last_delivery_id, last_ms)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (minute_ms, reason) DO UPDATE SET count = rejections.count + excluded.count,
    status = excluded.status, last_delivery_id = excluded.last_delivery_id,
    last_ms = excluded.last_ms
