-- One unverified attempt.
INSERT INTO unverified (delivery_id, reason, status, received_ms) VALUES (?1, ?2, ?3, ?4)
