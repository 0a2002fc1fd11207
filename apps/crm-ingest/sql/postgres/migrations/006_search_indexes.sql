-- Version 6: trigram indexes (`pg_trgm`) on the search text, lower-cased;
-- created only when the extension is available (else searches scan). The
-- indexed text is `crate::search_text!` written out (a test keeps the two
-- equal), the same expression the searches use so the indexes match them.
CREATE INDEX calls_search ON calls USING gin (lower(
    (call_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
    ) gin_trgm_ops);
CREATE INDEX trainings_search ON trainings USING gin (lower(
    (training_id || ' | ' || event_id || ' | ' || COALESCE(agent_id, '') || ' | ' || COALESCE(agent_name, '') || ' | ' || COALESCE(user_id, '') || ' | ' || COALESCE(team_member_user_id, ''))
    ) gin_trgm_ops);
CREATE INDEX deliveries_search ON deliveries USING gin (lower(
    (COALESCE(delivery_id, '') || ' | ' || COALESCE(event_id, '') || ' | ' || COALESCE(event, '') || ' | ' || outcome || ' | ' || COALESCE(reason, '') || ' | ' || COALESCE(body, ''))
    ) gin_trgm_ops);
