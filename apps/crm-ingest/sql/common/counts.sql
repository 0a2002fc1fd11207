-- Table sizes, tests apart (the health check: it reads every table). The sum
-- is cast as Postgres sums integers to NUMERIC.
SELECT
    (SELECT COUNT(*) FROM calls WHERE NOT is_test), (SELECT COUNT(*) FROM calls WHERE is_test),
    (SELECT COUNT(*) FROM trainings WHERE NOT is_test),
    (SELECT COUNT(*) FROM trainings WHERE is_test),
    (SELECT COUNT(*) FROM deliveries),
    (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM rejections),
    (SELECT MAX(received_ms) FROM deliveries)
