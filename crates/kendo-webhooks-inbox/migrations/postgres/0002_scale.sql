-- Scale: kept counts and done rows by age.

-- Retention: done rows by the time they were done.
CREATE INDEX kendo_inbox_done ON kendo_inbox (next_at) WHERE state = 'done';

-- Rows per state, kept by statement-level triggers (one upsert per state a
-- statement touched, not one per row; an update that moves no row between
-- states, such as a lease renewal, writes nothing: transition tables rule
-- out `UPDATE OF state`). Each connection adds to a shard of
-- its own (its backend pid modulo 16), so concurrent writers do not queue
-- on one counter row; a count is the sum of at most 80 rows.
CREATE TABLE kendo_inbox_counts (
    state text NOT NULL,
    shard integer NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (state, shard)
);
INSERT INTO kendo_inbox_counts (state, shard, n)
    SELECT s.state, 0, (SELECT count(*) FROM kendo_inbox AS i WHERE i.state = s.state)
    FROM (VALUES ('pending'), ('leased'), ('done'), ('failed'), ('dead')) AS s (state);

CREATE FUNCTION kendo_inbox_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kendo_inbox_counts (state, shard, n)
        SELECT state, pg_backend_pid() % 16, count(*) FROM kendo_inbox_new GROUP BY state
        ON CONFLICT (state, shard) DO UPDATE SET n = kendo_inbox_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE FUNCTION kendo_inbox_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kendo_inbox_counts (state, shard, n)
        SELECT state, pg_backend_pid() % 16, -count(*) FROM kendo_inbox_old GROUP BY state
        ON CONFLICT (state, shard) DO UPDATE SET n = kendo_inbox_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE FUNCTION kendo_inbox_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kendo_inbox_counts (state, shard, n)
        SELECT state, pg_backend_pid() % 16, sum(n) FROM (
            SELECT state, count(*) AS n FROM kendo_inbox_new GROUP BY state
            UNION ALL
            SELECT state, -count(*) FROM kendo_inbox_old GROUP BY state) AS moved
        GROUP BY state HAVING sum(n) <> 0
        ON CONFLICT (state, shard) DO UPDATE SET n = kendo_inbox_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER kendo_inbox_counts_insert AFTER INSERT ON kendo_inbox
    REFERENCING NEW TABLE AS kendo_inbox_new
    FOR EACH STATEMENT EXECUTE FUNCTION kendo_inbox_counts_added();
CREATE TRIGGER kendo_inbox_counts_delete AFTER DELETE ON kendo_inbox
    REFERENCING OLD TABLE AS kendo_inbox_old
    FOR EACH STATEMENT EXECUTE FUNCTION kendo_inbox_counts_removed();
CREATE TRIGGER kendo_inbox_counts_update AFTER UPDATE ON kendo_inbox
    REFERENCING OLD TABLE AS kendo_inbox_old NEW TABLE AS kendo_inbox_new
    FOR EACH STATEMENT EXECUTE FUNCTION kendo_inbox_counts_moved();
