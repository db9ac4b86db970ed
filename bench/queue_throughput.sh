#!/usr/bin/env bash
# The null model through Redis streams and the worker loop (`ppml bench
# queue`): plain TCP and TLS (client certificates required) alternating in
# R rounds, each round a fresh redis-server; prints every run, then the
# median throughput and latency of each and the cost of TLS as a ratio.
#
#   bench/queue_throughput.sh [--workers 1] [--seconds 5] [--rounds 3] [--batch 64] [--delay-us 500]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=1 SECONDS_PER_RUN=5 ROUNDS=3 BATCH=64 DELAY_US=500
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --delay-us) DELAY_US="$2"; shift 2 ;;
    *) echo "queue_throughput: unknown argument $1 (use --workers, --seconds, --rounds, --batch, --delay-us)" >&2; exit 2 ;;
  esac
done
scripts/build.sh >&2

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for tls in "" "--tls"; do
    echo "queue_throughput: round $round/$ROUNDS ${tls:-plain}" >&2
    build/bin/ppml bench queue --workers "$WORKERS" --seconds "$SECONDS_PER_RUN" --batch "$BATCH" \
      --delay-us "$DELAY_US" $tls --json 2>/dev/null | tail -n 1 >> "$results"
  done
done
/usr/bin/python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'transport':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}  (each run)")
for r in runs:
    print(f"{'tls' if r['tls'] else 'plain':<10} {r['throughput_per_s']:10.0f} {r['latency_ms_p50']:8.2f} {r['latency_ms_p99']:8.2f}")
median = {}
for tls in (False, True):
    sel = [r for r in runs if r['tls'] == tls]
    median[tls] = {k: statistics.median(r[k] for r in sel) for k in ('throughput_per_s', 'latency_ms_p50', 'latency_ms_p99')}
r0 = runs[0]
print(f"median of {len(runs) // 2} runs each: workers={r0['workers']} batch={r0['batch']} "
      f"max_queue_delay_us={r0['max_queue_delay_us']} payload={r0['payload_bytes']} B window={r0['window']} isa={r0['isa']}")
for tls in (False, True):
    m = median[tls]
    print(f"  {'tls' if tls else 'plain':<6} {m['throughput_per_s']:8.0f} req/s  p50 {m['latency_ms_p50']:.2f} ms  p99 {m['latency_ms_p99']:.2f} ms")
print(f"  TLS/plain throughput ratio: {median[True]['throughput_per_s'] / median[False]['throughput_per_s']:.2f}")
PY
