#!/bin/bash
# usage: tools/load/growth_run.sh sqlite|postgres N   -- seed N done inbox rows + N calls, then time reads and a 20 s load
# Expects a PostgreSQL on 127.0.0.1:15432 with a trust user `crm` (createdb
# rights), and works in /tmp/scale; both are set below.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
B="$ROOT/target/release"
mkdir -p /tmp/scale
TOKEN=tok0123456789abcdef
mode=$1; n=$2
cd /tmp/scale
rm -f crm.db*
PGB=/usr/lib/postgresql/15/bin
su postgres -s /bin/sh -c "$PGB/dropdb -h 127.0.0.1 -p 15432 -U crm --if-exists crm; $PGB/createdb -h 127.0.0.1 -p 15432 -U crm crm"
if [ "$mode" = postgres ]; then DBV="CRM_DATABASE_URL=postgres://crm@127.0.0.1:15432/crm"; else DBV="CRM_DB=/tmp/scale/crm.db"; fi
start() { env KENDO_WEBHOOK_SECRET=whsec_crm_load $DBV CRM_ADMIN_TOKEN=$TOKEN CRM_ADDR=127.0.0.1:18080 RUST_LOG=warn $B/crm-ingest > /tmp/scale/crm.log 2>&1 & echo $! > crm.pid; sleep 2; }
stop() { kill -INT $(cat crm.pid); sleep 2; }
start; stop
t0=$(date +%s)
if [ "$n" -gt 0 ]; then
  if [ "$mode" = postgres ]; then su postgres -s /bin/sh -c "$PGB/psql -q -h 127.0.0.1 -p 15432 -U crm crm -v n=$n -f $ROOT/tools/load/growth_seed_postgres.sql" | tail -3
  else python3 $ROOT/tools/load/growth_seed_sqlite.py /tmp/scale/crm.db $n; fi
fi
echo "seeded $n in $(( $(date +%s) - t0 )) s"
start
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]*1000 " ms"}'; }
echo "healthz median: $(for i in $(seq 50); do curl -s -o /dev/null -w '%{time_total}\n' localhost:18080/healthz; done | med)"
echo "status median: $(for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" localhost:18080/api/status; done | med)"
echo "dashboard median: $(for i in $(seq 7); do curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" localhost:18080/; done | med)"
echo "api page of 1000 median: $(for i in $(seq 10); do curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" 'localhost:18080/api/calls?limit=1000&cursor=500000'; done | med)"
$B/examples/crm_load --url http://127.0.0.1:18080 --token $TOKEN --secret whsec_crm_load --duration 20 --start 5000000 2>&1 | grep -E "RESULT"
stop
