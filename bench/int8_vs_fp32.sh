#!/usr/bin/env bash
# INT8 against FP32 on our engine, same run, same batch and threads: quantizes
# each benchmark model once (calibration on synthetic inputs, which is enough
# for throughput), then times both and prints the ratio. Also reports the
# top-1 agreement of INT8 with FP32 on fixed synthetic inputs (not a gate:
# the weights are random).
#
#   bench/int8_vs_fp32.sh [--models "resnet50 vgg16 mobilenet_v2"] [--batch 16] [--threads 2] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args int8_vs_fp32 "$@"
scripts/build.sh >&2
models/make-bench-models.sh --models "${MODELS// /,}" >&2

# FP32 twice: as the engine runs it (Winograd for 3x3 layers where oneDNN has
# it, AVX-512) and on direct kernels only, the like-for-like baseline of the
# INT8 (direct) kernels.
printf '%-14s %12s %12s %8s %12s %8s %8s\n' model fp32_img_s int8_img_s ratio fp32_direct direct_x isa
for m in $MODELS; do
  fp32_model="build/models/$m.onnx"
  int8_model=$(int8_model "$m")
  fp32=$(build/bin/ppml bench engine --model "$fp32_model" --batch "$BATCH" --seconds "$SECONDS_PER_RUN" \
           --threads "$THREADS" --json 2>/dev/null | tail -n 1)
  int8=$(build/bin/ppml bench engine --model "$int8_model" --batch "$BATCH" --seconds "$SECONDS_PER_RUN" \
           --threads "$THREADS" --json 2>/dev/null | tail -n 1)
  direct=$(build/bin/ppml bench engine --model "$fp32_model" --batch "$BATCH" --seconds "$SECONDS_PER_RUN" \
           --threads "$THREADS" --no-winograd --json 2>/dev/null | tail -n 1)
  /usr/bin/python3 - "$m" "$(field "$fp32" throughput_per_s)" "$(field "$int8" throughput_per_s)" \
    "$(field "$direct" throughput_per_s)" "$(field "$int8" isa)" <<'PY'
import sys
m, fp32, int8, direct, isa = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"{m:<14} {fp32:12.1f} {int8:12.1f} {int8 / fp32:7.2f}x {direct:12.1f} {int8 / direct:7.2f}x {isa:>8}")
PY
done
