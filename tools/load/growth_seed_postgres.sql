-- :n rows done a day ago, and as many calls
INSERT INTO kendo_inbox (event_id, delivery_id, event, body, received_at, state, attempts, next_at)
SELECT 'evt-seed-' || lpad(i::text, 9, '0'), 'dlv-seed-' || lpad(i::text, 9, '0'), 'call.uploaded',
       convert_to(format('{"id":"evt-seed-%s","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"call-%s","agentId":"agent_%s","agentName":"Agent %s","userId":"user_1","teamMemberUserId":"member_1","duration":245.5,"aiScore":"%s","timestamp":"2026-03-05T12:00:00Z"}}', lpad(i::text, 9, '0'), i, i % 50, i % 50, i % 100), 'UTF8'),
       (extract(epoch from now()) * 1000)::bigint - 86400000 + i / 100, 'done', 1,
       (extract(epoch from now()) * 1000)::bigint - 86400000 + i / 100
FROM generate_series(0, :n - 1) AS i;
INSERT INTO calls (event_id, call_id, agent_id, agent_name, user_id, team_member_user_id, duration, ai_score, timestamp, is_test, received_ms)
SELECT 'evt-seed-' || lpad(i::text, 9, '0'), 'call-' || i, 'agent_' || (i % 50), 'Agent ' || (i % 50), 'user_1', 'member_1', 245.5, (i % 100)::float8, '2026-03-05T12:00:00Z', false,
       (extract(epoch from now()) * 1000)::bigint - 86400000 + i / 100
FROM generate_series(0, :n - 1) AS i;
VACUUM ANALYZE;
SELECT state, sum(n) FROM kendo_inbox_counts GROUP BY state;
