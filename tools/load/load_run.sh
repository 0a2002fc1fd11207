#!/usr/bin/env bash
# The load run of BENCHMARKS.md: four receivers side by side, pinned cores.
#
# Run with: bash tools/load/load_run.sh [DURATION_SECONDS] [CONCURRENCY] [ROUNDS]
#      or:  LOAD_BIN=/path/to/examples bash tools/load/load_run.sh ...
#
# Builds the two examples once (release), then runs ROUNDS rounds; each
# round runs every mode once, in turn: `bare` (axum, reads the body),
# `layered` (KendoWebhookLayer with its defaults), `handwritten` (verify +
# typed parse + bounded LRU in the handler) and `svix` (svix's
# Webhook::verify + the same typed parse). Each run starts `load_server` on
# core 0 with one tokio worker and `load` on core 1 (taskset), on loopback
# only, then stops the server. The ratios printed for a round compare runs
# of that round only. A last layered run with 10 % resends (Kendo retries)
# checks de-duplication under load. Exits non-zero if a run fails its
# exactly-once check.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CONCURRENCY="${2:-64}"
ROUNDS="${3:-3}"
MODES="bare layered handwritten svix"
# Enough pre-signed deliveries for the run at well over 100k req/s.
DELIVERIES=$(( (DURATION + 2) * 150000 ))

# LOAD_BIN=DIR runs the binaries in DIR instead (e.g. a copy of an older
# build, to compare two commits in one session).
if [ -n "${LOAD_BIN:-}" ]; then
  BIN="$LOAD_BIN"
else
  cargo build --release -p kendo-load --bin load_server --bin load
  BIN=target/release
fi
OUT="$(mktemp -d)"
SERVER_PID=""
cleanup() { if [ -n "$SERVER_PID" ]; then kill -INT "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

echo "nproc $(nproc); $(lscpu | grep 'Model name' | tr -s ' '); binaries $BIN; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
run() { # mode label dup_ratio
  local mode="$1" label="$2" dup="$3" log="$OUT/server-$2.log" addr="" scheme=kendo
  [ "$mode" = svix ] && scheme=svix
  taskset -c 0 "$BIN/load_server" "$mode" --addr 127.0.0.1:0 --workers 1 --max-seconds $(( DURATION + 120 )) >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    addr="$(sed -n 's/^listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$log")"
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server did not start:"; cat "$log"; exit 1; }
  echo "load average at start of $label: $(cut -d' ' -f1-3 /proc/loadavg)"
  local status=0
  taskset -c 1 "$BIN/load" --url "$addr" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --warmup 1 --deliveries "$DELIVERIES" --dup-ratio "$dup" --label "$label" --scheme "$scheme" \
    >"$OUT/$label.txt" 2>"$OUT/$label.err" || status=$?
  grep '^RESULT' "$OUT/$label.txt" || cat "$OUT/$label.txt" "$OUT/$label.err"
  kill -INT "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
  return "$status"
}

failed=0
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    run "$mode" "$mode-$round" 0 || failed=1
  done
done
run layered layered-10pct-resends 0.1 || failed=1
grep -o 'answered by the layer itself: [^;]*' "$OUT/layered-10pct-resends.txt" || true

field() { sed -n "s/^RESULT .*[ ]$2=\([^ ]*\).*/\1/p" "$OUT/$1.txt"; }
echo
echo "round | bare req/s | layered | handwritten | svix | layered/bare (>= 0.85) | p99 layered/bare (<= 1.5) | layered/handwritten (>= 1.1) | layered/svix (>= 1.3) | CPU us/req bare, layered, handwritten, svix"
for round in $(seq 1 "$ROUNDS"); do
  awk -v r="$round" \
      -v b="$(field "bare-$round" rps)" -v l="$(field "layered-$round" rps)" \
      -v h="$(field "handwritten-$round" rps)" -v s="$(field "svix-$round" rps)" \
      -v bp="$(field "bare-$round" p99_us)" -v lp="$(field "layered-$round" p99_us)" \
      -v bc="$(field "bare-$round" cpu_us_per_req)" -v lc="$(field "layered-$round" cpu_us_per_req)" \
      -v hc="$(field "handwritten-$round" cpu_us_per_req)" -v sc="$(field "svix-$round" cpu_us_per_req)" 'BEGIN {
    printf "RATIO round %d | %.0f | %.0f | %.0f | %.0f | %.3f | %.3f | %.3f | %.3f | %s, %s, %s, %s\n",
      r, b, l, h, s, l / b, lp / bp, l / h, l / s, bc, lc, hc, sc }'
done
exit "$failed"
