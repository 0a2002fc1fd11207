-- Version 11, as sql/sqlite/migrations/011_agent_quarters.sql, with a
-- statement-level trigger (one upsert per agent and quarter hour per
-- statement).
CREATE TABLE agent_quarters (
    agent     TEXT NOT NULL,
    quarter   BIGINT NOT NULL,
    scored    BIGINT NOT NULL,
    score_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (agent, quarter)
);
INSERT INTO agent_quarters (agent, quarter, scored, score_sum)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), received_ms / 900000, COUNT(*),
        SUM(LEAST(GREATEST(ai_score, -1e9), 1e9))
    FROM calls WHERE NOT is_test AND ai_score IS NOT NULL GROUP BY 1, 2;
CREATE FUNCTION calls_agent_quarter() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO agent_quarters (agent, quarter, scored, score_sum)
        SELECT COALESCE(agent_name, agent_id, 'unknown agent'), received_ms / 900000, COUNT(*),
            SUM(LEAST(GREATEST(ai_score, -1e9), 1e9))
        FROM new_calls WHERE NOT is_test AND ai_score IS NOT NULL GROUP BY 1, 2
        ON CONFLICT (agent, quarter) DO UPDATE SET scored = agent_quarters.scored + excluded.scored,
            score_sum = agent_quarters.score_sum + excluded.score_sum;
    RETURN NULL;
END $f$;
CREATE TRIGGER calls_agent_quarter AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION calls_agent_quarter();
