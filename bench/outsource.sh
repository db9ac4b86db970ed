#!/usr/bin/env bash
# Verified outsourcing (Slalom), all three modes in one run per model: the
# enclave alone (off), checked results from ppml-accel (integrity), and
# checked results on blinded inputs (private). Each `ppml bench outsource`
# starts its own ppml-accel on a Unix socket; on this machine the
# "accelerator" is the same CPU, so the figures show what stays inside the
# enclave (MAC share, enclave ms per image) more than a speed-up.
#
# With --accel-backend cuda the ppml-accel it starts computes on the GPU
# (a build with CUDA; --cuda-kernel int8|fp64, default int8).
# PPML_PREBUILT=1 uses build/bin as it is, on a machine that cannot build
# (a GPU machine given binaries built elsewhere).
#
#   bench/outsource.sh [--models "resnet50 vgg16 mobilenet_v2"] [--batch 16] [--threads 2] [--seconds 10]
#                      [--accel-backend cpu|cuda] [--cuda-kernel int8|fp64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
accel_flags=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --accel-backend|--cuda-kernel) accel_flags+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
parse_bench_args outsource "${args[@]}"
if [ -z "${PPML_PREBUILT:-}" ]; then scripts/build.sh >&2; fi
models/make-bench-models.sh --models "${MODELS// /,}" >&2

printf '%-14s %-10s %10s %12s %12s %12s %10s %s\n' model mode img_s enclave_mac% enclave_ms accel_ms pad_ms isa/device
for m in $MODELS; do
  for mode in off integrity private; do
    log="build/bench/outsource_${m}_${mode}.log"
    mkdir -p build/bench
    if ! build/bin/ppml bench outsource --model "build/models/$m.onnx" --mode "$mode" --batch "$BATCH" \
           --seconds "$SECONDS_PER_RUN" --threads "$THREADS" --accel-threads "$THREADS" \
           --pads $((BATCH * 4)) "${accel_flags[@]}" --json >"$log" 2>&1; then
      echo "outsource: $m $mode failed; its output is in $log:" >&2
      tail -n 3 "$log" >&2
      continue
    fi
    out=$(tail -n 1 "$log")
    /usr/bin/python3 - "$m" "$mode" "$out" <<'PY'
import json, sys
m, mode, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{m:<14} {mode:<10} {j['throughput_per_s']:10.2f} {100*j['enclave_mac_fraction']:12.3f} "
      f"{j['enclave_ms_per_image']:12.2f} {j['accelerator_ms_per_image']:12.2f} {j['pad_ms_per_image']:10.2f} {j['isa']} {j['device']}")
PY
  done
done
