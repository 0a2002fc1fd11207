-- Version 11: each agent's real scored calls per quarter hour of arrival
-- (`received_ms / 900000`): how many and the sum of their scores (clamped
-- to +-1e9, as `call_agents`), kept by a trigger and filled from the
-- existing rows once. The agent page's 30-day trend sums at most 2,880 of
-- them instead of reading every scored call of the month (it read up to
-- 50,000 and cut off there, so a busy agent's newest days were missing).
CREATE TABLE agent_quarters (
    agent     TEXT NOT NULL,
    quarter   BIGINT NOT NULL,
    scored    BIGINT NOT NULL,
    score_sum REAL NOT NULL,
    PRIMARY KEY (agent, quarter)
) WITHOUT ROWID;
INSERT INTO agent_quarters (agent, quarter, scored, score_sum)
    SELECT COALESCE(agent_name, agent_id, 'unknown agent'), received_ms / 900000, COUNT(*),
        SUM(MIN(MAX(ai_score, -1e9), 1e9))
    FROM calls WHERE NOT is_test AND ai_score IS NOT NULL GROUP BY 1, 2;
CREATE TRIGGER calls_agent_quarter AFTER INSERT ON calls
    WHEN NOT new.is_test AND new.ai_score IS NOT NULL BEGIN
    INSERT INTO agent_quarters (agent, quarter, scored, score_sum)
        VALUES (COALESCE(new.agent_name, new.agent_id, 'unknown agent'),
            new.received_ms / 900000, 1, MIN(MAX(new.ai_score, -1e9), 1e9))
        ON CONFLICT (agent, quarter) DO UPDATE SET scored = scored + 1,
            score_sum = score_sum + excluded.score_sum;
END;
