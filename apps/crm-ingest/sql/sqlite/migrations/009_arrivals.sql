-- Version 9: real calls and trainings counted per quarter hour of their
-- arrival (`received_ms / 900000`), kept by triggers and filled from the
-- existing rows once, so the dashboard's "today" cards sum at most 96 rows
-- instead of counting every row received today through an index (1 M calls
-- in a day made that count the costliest part of a render). Every time
-- zone's midnight falls on a quarter hour today; the few rows between a
-- midnight that does not and the next quarter are counted through the
-- index.
CREATE TABLE arrivals (
    kind    TEXT NOT NULL,
    quarter BIGINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (kind, quarter)
) WITHOUT ROWID;
INSERT INTO arrivals (kind, quarter, n)
    SELECT 'call', received_ms / 900000, COUNT(*) FROM calls WHERE NOT is_test GROUP BY 2;
INSERT INTO arrivals (kind, quarter, n)
    SELECT 'training', received_ms / 900000, COUNT(*) FROM trainings WHERE NOT is_test GROUP BY 2;
CREATE TRIGGER calls_arrival AFTER INSERT ON calls WHEN NOT new.is_test BEGIN
    INSERT INTO arrivals (kind, quarter, n) VALUES ('call', new.received_ms / 900000, 1)
        ON CONFLICT (kind, quarter) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER trainings_arrival AFTER INSERT ON trainings WHEN NOT new.is_test BEGIN
    INSERT INTO arrivals (kind, quarter, n) VALUES ('training', new.received_ms / 900000, 1)
        ON CONFLICT (kind, quarter) DO UPDATE SET n = n + 1;
END;
