#!/usr/bin/env bash
# usage: tools/load/interleaved.sh sqlite|postgres DIR [DIR ...]
#
# Compares builds of crm-ingest on one backend, interleaved so the
# machine's load falls on each alike: DIR holds a release `crm-ingest`
# binary (copy it there from target/release after building each commit).
# ROUNDS rounds (default 2); each run gets a fresh database (a new SQLite
# file, or a new database on its own PostgreSQL: initdb + postgres as the
# `postgres` user, port 15435), then `crm_load` (built here) drives 64
# connections for 20 s and waits for the backlog to drain. One line per
# run: ingest/s, the backlog when the load stopped, the drain time.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BACKEND="${1:?usage: $0 sqlite|postgres DIR [DIR ...]}"
shift
cargo build --release -q -p crm-ingest --example crm_load --manifest-path "$ROOT/Cargo.toml"
W=$(mktemp -d); chmod 755 "$W"
export KENDO_WEBHOOK_SECRET=whsec_crm_load CRM_ADMIN_TOKEN=tok0123456789abcdef CRM_ADDR=127.0.0.1:18383 RUST_LOG=warn
if [ "$BACKEND" = postgres ]; then
  PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | head -1)")"
  PGDATA=$W/pg; mkdir -p "$PGDATA"; chown postgres "$PGDATA"
  su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -U crm --auth=trust" >/dev/null
  su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/log -w -o '-c listen_addresses=127.0.0.1 -p 15435 -c unix_socket_directories=$PGDATA' start" >/dev/null
  trap 'su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -m fast stop" >/dev/null 2>&1; rm -rf "$W"' EXIT
  export CRM_DATABASE_URL=postgres://crm@127.0.0.1:15435/crm
else
  trap 'rm -rf "$W"' EXIT
  export CRM_DB="$W/crm.sqlite3"
fi
for round in $(seq "${ROUNDS:-2}"); do
  for v in "$@"; do
    if [ "$BACKEND" = postgres ]; then
      su postgres -s /bin/sh -c "$PGBIN/dropdb -h 127.0.0.1 -p 15435 -U crm --if-exists crm; $PGBIN/createdb -h 127.0.0.1 -p 15435 -U crm crm"
    else
      rm -f "$W"/crm.sqlite3*
    fi
    "$v/crm-ingest" > "$W/app.log" 2>&1 & APP=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18383/healthz && break; sleep 0.1; done
    r=$("$ROOT/target/release/examples/crm_load" --url http://127.0.0.1:18383 --token tok0123456789abcdef --secret whsec_crm_load --duration 20 2>&1 | grep '^RESULT')
    kill -INT $APP; wait $APP
    echo "$(basename "$v") $BACKEND round $round load $(cut -d' ' -f1 /proc/loadavg): $(echo "$r" | grep -o 'ingest_rps=[0-9]*\|backlog_at_stop=[0-9]*\|drain_s=[0-9.]*\|done=[0-9]*' | tr '\n' ' ')"
  done
done
