-- Keeps the newest $1 verified log entries.
DELETE FROM deliveries WHERE seq <= (SELECT MAX(seq) FROM deliveries) - $1
