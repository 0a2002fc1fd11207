-- One verified delivery-log entry.
INSERT INTO deliveries (delivery_id, event_id, event, outcome, reason, status, secret_label,
    latency_ms, received_ms, body, headers, answer)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
