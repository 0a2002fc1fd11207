#!/usr/bin/env bash
# The load run of BENCHMARKS.md: bare vs layered, one session, pinned cores.
#
# Run with: bash benches/load_run.sh [DURATION_SECONDS] [CONCURRENCY]
#
# Builds the two examples once (release), then for each mode starts
# `load_server` on core 0 and `load` on core 1 (taskset), on loopback only,
# stops the server, and prints the layered/bare ratios; two alternating
# pairs (bare, layered, bare, layered). Then a layered run with 10 % resends
# (Kendo retries) checks de-duplication under load. Exits non-zero if a run
# fails its exactly-once check.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONCURRENCY="${2:-64}"
# Enough pre-signed deliveries for the run at well over 100k req/s.
DELIVERIES=$(( (DURATION + 2) * 120000 ))

cargo build --release --all-features --example load_server --example load
BIN=target/release/examples
OUT="$(mktemp -d)"
SERVER_PID=""
cleanup() { if [ -n "$SERVER_PID" ]; then kill -INT "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

echo "nproc $(nproc); $(lscpu | grep 'Model name' | tr -s ' ')"
run() { # mode label dup_ratio
  local mode="$1" label="$2" dup="$3" log="$OUT/server-$2.log" addr=""
  taskset -c 0 "$BIN/load_server" "$mode" --addr 127.0.0.1:0 --workers 1 --max-seconds $(( DURATION + 120 )) >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    addr="$(sed -n 's/^listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$log")"
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server did not start:"; cat "$log"; exit 1; }
  echo "uptime at start of $label: $(uptime)"
  local status=0
  taskset -c 1 "$BIN/load" --url "$addr" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --warmup 1 --deliveries "$DELIVERIES" --dup-ratio "$dup" --label "$label" | tee "$OUT/$label.txt" || status=$?
  kill -INT "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
  return "$status"
}

failed=0
# Two alternating pairs, so a change in the neighbours' load shows.
for pair in 1 2; do
  run bare "bare-$pair" 0 || failed=1
  run layered "layered-$pair" 0 || failed=1
done
run layered layered-10pct-resends 0.1 || failed=1

field() { sed -n "s/^RESULT .*[ ]$2=\([^ ]*\).*/\1/p" "$OUT/$1.txt"; }
for pair in 1 2; do
  awk -v pair="$pair" -v lr="$(field "layered-$pair" rps)" -v br="$(field "bare-$pair" rps)" \
      -v lp="$(field "layered-$pair" p99_us)" -v bp="$(field "bare-$pair" p99_us)" \
      -v lc="$(field "layered-$pair" cpu_us_per_req)" -v bc="$(field "bare-$pair" cpu_us_per_req)" 'BEGIN {
    printf "RATIO pair %d layered/bare: req/s %.3f (goal >= 0.85), p99 %.3f (goal <= 1.5), server CPU per request %.3f (+%.2f us)\n",
      pair, lr / br, lp / bp, lc / bc, lc - bc }'
done
exit "$failed"
