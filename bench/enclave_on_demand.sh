#!/usr/bin/env bash
# On-demand weights (Occlumency) against the fully resident model: for each
# model, precision and batch, `ppml bench enclave` seals the model to two
# throwaway enclaves (on-demand under the budget, resident without one) and
# alternates encrypted requests between them; this repeats that R times and
# prints every ratio and their median, with the peak enclave memory.
#
#   bench/enclave_on_demand.sh [--models "resnet50"] [--batches "1 2 3 4"] [--budget-mib 24]
#                              [--repeats 5] [--seconds 1] [--rounds 8] [--threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
MODELS="resnet50"
BATCHES="1 2 3 4"
BUDGET_MIB=24
REPEATS=5
SECONDS_PER_RUN=1
ROUNDS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --models) MODELS="$2"; shift 2 ;;
    --batches) BATCHES="$2"; shift 2 ;;
    --budget-mib) BUDGET_MIB="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    *) echo "enclave_on_demand: unknown argument $1 (use --models, --batches, --budget-mib, --repeats," \
            "--seconds, --rounds, --threads)" >&2; exit 2 ;;
  esac
done
if [ -z "${PPML_PREBUILT:-}" ]; then scripts/build.sh >&2; fi
models/make-bench-models.sh --models "${MODELS// /,}" >&2
mkdir -p build/bench

printf '%-12s %-5s %5s %-34s %7s %12s %10s %s\n' model prec batch ratios median peak_MiB arena_MiB isa
for m in $MODELS; do
  for precision in fp32 int8; do
    model="build/models/$m.onnx"
    [ "$precision" = int8 ] && model=$(int8_model "$m")
    for b in $BATCHES; do
      log="build/bench/enclave_on_demand_${m}_${precision}_b$b.log"
      : >"$log"
      for _ in $(seq "$REPEATS"); do
        if ! build/bin/ppml bench enclave --model "$model" --precision "$precision" --batch "$b" \
               --budget-mib "$BUDGET_MIB" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" \
               --threads "$THREADS" --json >>"$log" 2>&1; then
          echo "enclave_on_demand: $m $precision batch $b failed; its output is in $log:" >&2
          tail -n 2 "$log" >&2
          continue 2
        fi
      done
      /usr/bin/python3 - "$log" "$m" "$precision" "$b" <<'EOF'
import json, statistics, sys
log, model, precision, batch = sys.argv[1:]
runs = [json.loads(line) for line in open(log) if line.startswith("{")]
ratios = [r["ratio"] for r in runs]
print(f"{model:12} {precision:5} {batch:>5} {' '.join(f'{x:.3f}' for x in ratios):34} "
      f"{statistics.median(ratios):7.3f} {max(r['peak_enclave_mib'] for r in runs):12.2f} "
      f"{runs[-1]['arena_mib']:10.2f} {runs[-1]['isa']}")
EOF
    done
  done
done
