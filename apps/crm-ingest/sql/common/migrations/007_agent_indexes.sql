-- Version 7 (SQLite and Postgres): one agent's calls and trainings found by
-- the agent key (`crate::agent::AGENT_KEY`).
CREATE INDEX calls_agent ON calls
    (COALESCE(agent_name, agent_id, 'unknown agent'), is_test, received_ms);
CREATE INDEX trainings_agent ON trainings
    (COALESCE(agent_name, agent_id, 'unknown agent'), is_test, received_ms);
