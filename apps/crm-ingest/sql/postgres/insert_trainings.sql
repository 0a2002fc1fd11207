-- A batch's projected trainings, as insert_calls.sql.
INSERT INTO trainings (event_id, training_id, agent_id, agent_name, user_id, team_member_user_id,
    duration, ai_score, timestamp, is_test, received_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::float8[], $8::float8[], $9::text[], $10::bool[], $11::int8[])
ON CONFLICT (event_id) DO NOTHING
