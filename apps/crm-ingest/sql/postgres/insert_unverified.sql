-- A batch's unverified attempts, one array per column.
INSERT INTO unverified (delivery_id, reason, status, received_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[])
