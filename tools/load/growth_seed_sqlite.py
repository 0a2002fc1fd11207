# usage: seed_sqlite.py DB N  -- N done inbox rows (with ~330-byte bodies) and N calls, as if processed a day ago
import sqlite3, sys, time, json
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
now = int(time.time()*1000) - 86_400_000
def body(i):
    return json.dumps({"id": f"evt-seed-{i:09}", "event": "call.uploaded", "created_at": "2026-03-05T12:00:00Z",
        "data": {"callId": f"call-{i}", "agentId": f"agent_{i%50}", "agentName": f"Agent {i%50}", "userId": "user_1",
                 "teamMemberUserId": "member_1", "duration": 245.5, "aiScore": str(i % 100), "timestamp": "2026-03-05T12:00:00Z"}}).encode()
B = 50_000
for start in range(0, n, B):
    rows = range(start, min(n, start+B))
    c.executemany("INSERT INTO kendo_inbox (event_id, delivery_id, event, received_at, state, attempts, next_at, body) VALUES (?,?,?,?,'done',1,?,?)",
        ((f"evt-seed-{i:09}", f"dlv-seed-{i:09}", "call.uploaded", now + i//100, now + i//100, body(i)) for i in rows))
    c.executemany("INSERT INTO calls (event_id, call_id, agent_id, agent_name, user_id, team_member_user_id, duration, ai_score, timestamp, is_test, received_ms) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
        ((f"evt-seed-{i:09}", f"call-{i}", f"agent_{i%50}", f"Agent {i%50}", "user_1", "member_1", 245.5, float(i%100), "2026-03-05T12:00:00Z", now + i//100) for i in rows))
    c.commit()
print(c.execute("SELECT state, n FROM kendo_inbox_counts").fetchall(), c.execute("SELECT count(*) FROM calls").fetchone())
