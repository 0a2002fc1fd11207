-- One projected call; a second with the same event id changes nothing.
INSERT INTO calls (event_id, call_id, agent_id, agent_name, user_id, team_member_user_id,
    duration, ai_score, timestamp, is_test, received_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (event_id) DO NOTHING
