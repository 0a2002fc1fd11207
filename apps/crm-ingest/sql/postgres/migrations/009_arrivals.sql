-- Version 9, as sql/sqlite/migrations/009_arrivals.sql, with
-- statement-level triggers (one upsert per quarter hour per statement).
CREATE TABLE arrivals (
    kind    TEXT NOT NULL,
    quarter BIGINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (kind, quarter)
);
INSERT INTO arrivals (kind, quarter, n)
    SELECT 'call', received_ms / 900000, COUNT(*) FROM calls WHERE NOT is_test GROUP BY 2;
INSERT INTO arrivals (kind, quarter, n)
    SELECT 'training', received_ms / 900000, COUNT(*) FROM trainings WHERE NOT is_test GROUP BY 2;
CREATE FUNCTION calls_arrival() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO arrivals (kind, quarter, n)
        SELECT 'call', received_ms / 900000, COUNT(*) FROM new_calls WHERE NOT is_test GROUP BY 2
        ON CONFLICT (kind, quarter) DO UPDATE SET n = arrivals.n + excluded.n;
    RETURN NULL;
END $f$;
CREATE TRIGGER calls_arrival AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION calls_arrival();
CREATE FUNCTION trainings_arrival() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO arrivals (kind, quarter, n)
        SELECT 'training', received_ms / 900000, COUNT(*) FROM new_trainings WHERE NOT is_test
        GROUP BY 2
        ON CONFLICT (kind, quarter) DO UPDATE SET n = arrivals.n + excluded.n;
    RETURN NULL;
END $f$;
CREATE TRIGGER trainings_arrival AFTER INSERT ON trainings REFERENCING NEW TABLE AS new_trainings
    FOR EACH STATEMENT EXECUTE FUNCTION trainings_arrival();
