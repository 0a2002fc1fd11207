-- Version 3, as sql/sqlite/migrations/003_dashboard_aggregates.sql, with
-- statement-level triggers (one upsert per agent per statement).
CREATE TABLE call_agents (
    agent     TEXT PRIMARY KEY,
    calls     BIGINT NOT NULL DEFAULT 0,
    scored    BIGINT NOT NULL DEFAULT 0,
    score_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    b0 BIGINT NOT NULL DEFAULT 0,
    b1 BIGINT NOT NULL DEFAULT 0,
    b2 BIGINT NOT NULL DEFAULT 0,
    b3 BIGINT NOT NULL DEFAULT 0,
    b4 BIGINT NOT NULL DEFAULT 0,
    b5 BIGINT NOT NULL DEFAULT 0,
    b6 BIGINT NOT NULL DEFAULT 0,
    b7 BIGINT NOT NULL DEFAULT 0,
    b8 BIGINT NOT NULL DEFAULT 0,
    b9 BIGINT NOT NULL DEFAULT 0
);
CREATE FUNCTION call_agents_add() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
        SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
            COALESCE(SUM(LEAST(GREATEST(ai_score, -1e9), 1e9)), 0),
            SUM(CASE WHEN ai_score < 10 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 10 AND ai_score < 20 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 20 AND ai_score < 30 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 30 AND ai_score < 40 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 40 AND ai_score < 50 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 50 AND ai_score < 60 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 60 AND ai_score < 70 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 70 AND ai_score < 80 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 80 AND ai_score < 90 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 90 THEN 1 ELSE 0 END)
        FROM new_calls WHERE NOT is_test GROUP BY 1
        ON CONFLICT (agent) DO UPDATE SET calls = call_agents.calls + excluded.calls,
            scored = call_agents.scored + excluded.scored,
            score_sum = call_agents.score_sum + excluded.score_sum,
            b0 = call_agents.b0 + excluded.b0,
            b1 = call_agents.b1 + excluded.b1,
            b2 = call_agents.b2 + excluded.b2,
            b3 = call_agents.b3 + excluded.b3,
            b4 = call_agents.b4 + excluded.b4,
            b5 = call_agents.b5 + excluded.b5,
            b6 = call_agents.b6 + excluded.b6,
            b7 = call_agents.b7 + excluded.b7,
            b8 = call_agents.b8 + excluded.b8,
            b9 = call_agents.b9 + excluded.b9;
    RETURN NULL;
END $f$;
INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
        COALESCE(SUM(LEAST(GREATEST(ai_score, -1e9), 1e9)), 0),
        SUM(CASE WHEN ai_score < 10 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 10 AND ai_score < 20 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 20 AND ai_score < 30 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 30 AND ai_score < 40 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 40 AND ai_score < 50 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 50 AND ai_score < 60 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 60 AND ai_score < 70 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 70 AND ai_score < 80 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 80 AND ai_score < 90 THEN 1 ELSE 0 END),
        SUM(CASE WHEN ai_score >= 90 THEN 1 ELSE 0 END)
    FROM calls WHERE NOT is_test GROUP BY 1;
CREATE TRIGGER calls_aggregate AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION call_agents_add();
CREATE TABLE crm_totals (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO crm_totals (name, n) SELECT 'trainings', COUNT(*) FROM trainings WHERE NOT is_test;
CREATE FUNCTION trainings_total() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE crm_totals SET n = n + (SELECT COUNT(*) FROM new_trainings WHERE NOT is_test)
        WHERE name = 'trainings';
    RETURN NULL;
END $f$;
CREATE TRIGGER trainings_total AFTER INSERT ON trainings REFERENCING NEW TABLE AS new_trainings
    FOR EACH STATEMENT EXECUTE FUNCTION trainings_total();
CREATE INDEX calls_received_real ON calls (is_test, received_ms);
CREATE INDEX trainings_received_real ON trainings (is_test, received_ms);
