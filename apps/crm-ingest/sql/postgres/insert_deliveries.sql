-- A batch's verified delivery-log entries, one array per column.
INSERT INTO deliveries (delivery_id, event_id, event, outcome, reason, status, secret_label,
    latency_ms, received_ms, body, headers, answer)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[],
    $7::text[], $8::float8[], $9::int8[], $10::text[], $11::text[], $12::text[])
