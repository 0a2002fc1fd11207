#!/usr/bin/env bash
# usage: tools/load/dashboard_delay.sh sqlite|postgres [SAMPLES] [LOOPS] [ROWS]
#
# Starts a release crm-ingest on loopback (SQLite in a temporary directory,
# or its own PostgreSQL: initdb + postgres as the `postgres` user on port
# 15433), seeds ROWS deliveries (default 100,000; 0 for an empty database)
# so the dashboard has real work, then runs
# tools/load/dashboard_delay.py: the projection delay idle and with LOOPS
# (default 16) dashboard reload loops, and their ratio. Stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODE="${1:?sqlite or postgres}"
SAMPLES="${2:-30}"
LOOPS="${3:-16}"
ROWS="${4:-100000}"
BIN="$ROOT/target/release/crm-ingest"
TOKEN=tok0123456789abcdef
SECRET=whsec_dashboard_delay
WORK="$(mktemp -d)"
chmod 755 "$WORK"
APP=""
PGDATA="$WORK/pg"
PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | head -1)")"
cleanup() {
  [ -n "$APP" ] && kill -INT "$APP" 2>/dev/null && wait "$APP" 2>/dev/null || true
  if [ -d "$PGDATA" ]; then su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -m fast stop" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p crm-ingest --manifest-path "$ROOT/Cargo.toml"
if [ "$MODE" = postgres ]; then
  mkdir -p "$PGDATA" && chown postgres "$PGDATA"
  su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -U crm --auth=trust" >/dev/null
  su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/log -w -o '-c listen_addresses=127.0.0.1 -p 15433 -c unix_socket_directories=$PGDATA' start" >/dev/null
  su postgres -s /bin/sh -c "$PGBIN/createdb -h 127.0.0.1 -p 15433 -U crm crm"
  export CRM_DATABASE_URL=postgres://crm@127.0.0.1:15433/crm
else
  export CRM_DB="$WORK/crm.sqlite3"
fi
export KENDO_WEBHOOK_SECRET=$SECRET CRM_ADMIN_TOKEN=$TOKEN CRM_ADDR=127.0.0.1:18181 RUST_LOG=warn
if [ "$ROWS" -gt 0 ]; then
  SEEDED=$(date +%s%N)
  "$BIN" seed "$ROWS" | tail -1
  echo "seeded $ROWS rows in $(( ($(date +%s%N) - SEEDED) / 1000000 )) ms"
fi
"$BIN" >"$WORK/app.log" 2>&1 &
APP=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18181/healthz && break; sleep 0.1; done
echo "$MODE, $ROWS seeded rows, commit $(git -C "$ROOT" rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/tools/load/dashboard_delay.py" http://127.0.0.1:18181 "$TOKEN" "$SECRET" "$SAMPLES" "$LOOPS"
