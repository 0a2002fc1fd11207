-- Version 10 changes SQLite's search triggers only (see
-- sql/sqlite/migrations/010_log_search_in_bulk.sql): Postgres keeps its
-- trigram indexes itself. Recorded so both dialects share version numbers.
SELECT 1;
