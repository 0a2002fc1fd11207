-- Version 6: substring search (`crate::search`) through FTS5 trigram indexes
-- holding rowids only (`content=''`), kept by triggers, filled from the
-- existing rows once. The indexed text is `crate::search_text!` written out
-- (a test keeps the two equal).
CREATE VIRTUAL TABLE calls_search USING fts5(text, content='', tokenize='trigram');
INSERT INTO calls_search (rowid, text) SELECT seq,
    (call_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
    FROM calls;
CREATE TRIGGER calls_search_add AFTER INSERT ON calls BEGIN
    INSERT INTO calls_search (rowid, text) SELECT seq,
        (call_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
        FROM calls WHERE seq = new.seq;
END;
CREATE VIRTUAL TABLE trainings_search USING fts5(text, content='', tokenize='trigram');
INSERT INTO trainings_search (rowid, text) SELECT seq,
    (training_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
    FROM trainings;
CREATE TRIGGER trainings_search_add AFTER INSERT ON trainings BEGIN
    INSERT INTO trainings_search (rowid, text) SELECT seq,
        (training_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
        FROM trainings WHERE seq = new.seq;
END;
CREATE VIRTUAL TABLE deliveries_search
    USING fts5(text, content='', contentless_delete=1, tokenize='trigram');
INSERT INTO deliveries_search (rowid, text) SELECT seq,
    (COALESCE(delivery_id, '') || ' | ' || COALESCE(event_id, '') || ' | ' || COALESCE(event, '') || ' | ' || outcome || ' | ' || COALESCE(reason, '') || ' | ' || COALESCE(body, ''))
    FROM deliveries;
CREATE TRIGGER deliveries_search_add AFTER INSERT ON deliveries BEGIN
    INSERT INTO deliveries_search (rowid, text) SELECT seq,
        (COALESCE(delivery_id, '') || ' | ' || COALESCE(event_id, '') || ' | ' || COALESCE(event, '') || ' | ' || outcome || ' | ' || COALESCE(reason, '') || ' | ' || COALESCE(body, ''))
        FROM deliveries WHERE seq = new.seq;
END;
CREATE TRIGGER deliveries_search_remove AFTER DELETE ON deliveries BEGIN
    DELETE FROM deliveries_search WHERE rowid = old.seq;
END;
