-- Version 3: aggregates of the real calls kept by a trigger (per agent: calls,
-- scored calls, the sum of scores clamped to +-1e9, the score histogram's ten
-- buckets) and the number of real trainings, so the dashboard never scans
-- `calls` or `trainings`; filled from the existing rows once.
CREATE TABLE call_agents (
    agent     TEXT PRIMARY KEY,
    calls     BIGINT NOT NULL DEFAULT 0,
    scored    BIGINT NOT NULL DEFAULT 0,
    score_sum REAL NOT NULL DEFAULT 0,
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
INSERT INTO call_agents (agent, calls, scored, score_sum, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), COUNT(*), COUNT(ai_score),
        COALESCE(SUM(MIN(MAX(ai_score, -1e9), 1e9)), 0),
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
CREATE TABLE crm_totals (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO crm_totals (name, n) SELECT 'trainings', COUNT(*) FROM trainings WHERE NOT is_test;
CREATE TRIGGER calls_aggregate AFTER INSERT ON calls WHEN NOT new.is_test BEGIN
    INSERT OR IGNORE INTO call_agents (agent) VALUES (COALESCE(new.agent_name, new.agent_id, 'unknown agent'));
    UPDATE call_agents SET calls = calls + 1,
        scored = scored + (new.ai_score IS NOT NULL),
        score_sum = score_sum + COALESCE(MIN(MAX(new.ai_score, -1e9), 1e9), 0),
        b0 = b0 + (CASE WHEN new.ai_score < 10 THEN 1 ELSE 0 END),
        b1 = b1 + (CASE WHEN new.ai_score >= 10 AND new.ai_score < 20 THEN 1 ELSE 0 END),
        b2 = b2 + (CASE WHEN new.ai_score >= 20 AND new.ai_score < 30 THEN 1 ELSE 0 END),
        b3 = b3 + (CASE WHEN new.ai_score >= 30 AND new.ai_score < 40 THEN 1 ELSE 0 END),
        b4 = b4 + (CASE WHEN new.ai_score >= 40 AND new.ai_score < 50 THEN 1 ELSE 0 END),
        b5 = b5 + (CASE WHEN new.ai_score >= 50 AND new.ai_score < 60 THEN 1 ELSE 0 END),
        b6 = b6 + (CASE WHEN new.ai_score >= 60 AND new.ai_score < 70 THEN 1 ELSE 0 END),
        b7 = b7 + (CASE WHEN new.ai_score >= 70 AND new.ai_score < 80 THEN 1 ELSE 0 END),
        b8 = b8 + (CASE WHEN new.ai_score >= 80 AND new.ai_score < 90 THEN 1 ELSE 0 END),
        b9 = b9 + (CASE WHEN new.ai_score >= 90 THEN 1 ELSE 0 END)
    WHERE agent = COALESCE(new.agent_name, new.agent_id, 'unknown agent');
END;
CREATE TRIGGER trainings_total AFTER INSERT ON trainings WHEN NOT new.is_test BEGIN
    UPDATE crm_totals SET n = n + 1 WHERE name = 'trainings';
END;
CREATE INDEX calls_received_real ON calls (is_test, received_ms);
CREATE INDEX trainings_received_real ON trainings (is_test, received_ms);
