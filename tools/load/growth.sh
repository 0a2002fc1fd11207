#!/usr/bin/env bash
# usage: tools/load/growth.sh [ROWS ...]        (default: 0 1000000)
#
# Issue 18's growth table in one run, on both backends, with everything it
# needs started here on loopback: for each backend (SQLite in a temporary
# directory; its own PostgreSQL, initdb + postgres as the `postgres` user on
# port 15434) and each ROWS, a fresh database is filled by `crm-ingest seed
# ROWS` (the real path: signed, verified, enqueued, projected; its rate is
# printed), the app is started, its reads are timed with curl (medians of
# 50 `/healthz`, 20 `/api/status`, 7 dashboards, 10 API pages of 1,000
# calls), then `crm_load` drives 64 connections for 20 s and waits for the
# backlog to drain. The naive receiver (one SQLite transaction per
# delivery, same disk) runs first and last, as the baseline of `× naive`.
# One line per run starting with `ROW`; stops everything it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(0 1000000)
BIN="$ROOT/target/release"
TOKEN=tok0123456789abcdef
SECRET=whsec_crm_load
ADDR=127.0.0.1:18282
WORK="$(mktemp -d)"
chmod 755 "$WORK"
APP=""
PGDATA=""
PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | head -1)")"
pg_stop() {
  if [ -n "$PGDATA" ] && [ -d "$PGDATA" ]; then
    su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$PGDATA"
  fi
  PGDATA=""
}
app_stop() {
  if [ -n "$APP" ]; then kill -INT "$APP" 2>/dev/null && wait "$APP" 2>/dev/null || true; fi
  APP=""
}
cleanup() { app_stop; pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p crm-ingest --bin crm-ingest --example crm_load --manifest-path "$ROOT/Cargo.toml"

# A fresh database of the backend, exported as the app's settings.
fresh() {
  unset CRM_DB CRM_DATABASE_URL
  if [ "$1" = postgres ]; then
    pg_stop
    PGDATA="$WORK/pg"
    mkdir -p "$PGDATA" && chown postgres "$PGDATA"
    su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -U crm --auth=trust" >/dev/null
    su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/log -w -o '-c listen_addresses=127.0.0.1 -p 15434 -c unix_socket_directories=$PGDATA' start" >/dev/null
    su postgres -s /bin/sh -c "$PGBIN/createdb -h 127.0.0.1 -p 15434 -U crm crm"
    export CRM_DATABASE_URL=postgres://crm@127.0.0.1:15434/crm
  else
    rm -f "$WORK"/crm.sqlite3*
    export CRM_DB="$WORK/crm.sqlite3"
  fi
}

median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'; }
times() { # N PATH [auth]
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "http://$ADDR$2"
  done | median_ms
}

naive() {
  rm -f "$WORK"/naive.db*
  "$BIN/examples/crm_load" --naive "$WORK/naive.db" --secret "$SECRET" --duration 20 2>&1 \
    | sed -n 's/.*ingest_rps=\([0-9]*\).*/\1/p'
}

export KENDO_WEBHOOK_SECRET=$SECRET CRM_ADMIN_TOKEN=$TOKEN CRM_ADDR=$ADDR RUST_LOG=warn
echo "commit $(git -C "$ROOT" rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
NAIVE_FIRST=$(naive)
echo "ROW naive (first) ingest_rps=$NAIVE_FIRST"
for backend in sqlite postgres; do
  for rows in "${ROWS[@]}"; do
    fresh "$backend"
    seed="-"
    if [ "$rows" -gt 0 ]; then
      seed=$("$BIN/crm-ingest" seed "$rows" | sed -n 's/.*(\([0-9]*\)\/s.*/\1/p')
    fi
    "$BIN/crm-ingest" >"$WORK/app.log" 2>&1 &
    APP=$!
    for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$ADDR/healthz" && break; sleep 0.1; done
    healthz=$(times 50 /healthz)
    status=$(times 20 /api/status)
    dashboard=$(times 7 /)
    page=$(times 10 '/api/calls?limit=1000')
    result=$("$BIN/examples/crm_load" --url "http://$ADDR" --token "$TOKEN" --secret "$SECRET" \
      --duration 20 --start 5000000 2>&1 | grep '^RESULT' || true)
    app_stop
    rps=$(echo "$result" | sed -n 's/.*ingest_rps=\([0-9]*\).*/\1/p')
    ratio=$(awk -v a="${rps:-0}" -v b="$NAIVE_FIRST" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "ROW $backend rows=$rows seed_per_s=$seed healthz_ms=$healthz status_ms=$status dashboard_ms=$dashboard api_page_ms=$page ingest_rps=${rps:-?} x_naive=$ratio load=$(cut -d' ' -f1 /proc/loadavg)"
    echo "    $result"
  done
  pg_stop
done
echo "ROW naive (last) ingest_rps=$(naive)"
