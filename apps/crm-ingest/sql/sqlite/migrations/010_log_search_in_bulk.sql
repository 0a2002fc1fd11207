-- Version 10: the delivery log's search index is kept in bulk, about once a
-- second (`Storage::index_search`), no longer by triggers on every insert
-- and delete. Each log commit wrote a small FTS5 segment of its bodies'
-- trigrams, and each prune a tombstone per row; merging those segments and
-- checking those tombstones took most of the writer's time under load
-- (ingest 2-3x faster without them). `search_indexed` records the rows the
-- index holds, `since < seq <= upto`: rows pruned since stay in it until
-- it is emptied and refilled (a search joins its matches to the rows still
-- there), and a search reads the rows after `upto` with LIKE, so it misses
-- nothing (case is ignored for ASCII letters only in those, by LIKE). The
-- triggers kept the index equal to the table until now, hence the range.
DROP TRIGGER deliveries_search_add;
DROP TRIGGER deliveries_search_remove;
CREATE TABLE search_indexed (
    name  TEXT PRIMARY KEY,
    since INTEGER NOT NULL,
    upto  INTEGER NOT NULL
);
INSERT INTO search_indexed (name, since, upto)
    SELECT 'deliveries', COALESCE(MIN(seq), 1) - 1, COALESCE(MAX(seq), 0) FROM deliveries;
