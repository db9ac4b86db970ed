#!/usr/bin/env bash
# Our FP32 engine against PyTorch (TorchScript frozen + optimize_for_inference)
# on the same architectures, in one run, same batch, same threads; prints a
# table with the ratio and the fraction of the machine's convolution roofline
# our engine reaches. Installs PyTorch and makes the models when missing.
#
#   bench/engine_vs_pytorch.sh [--models "resnet50 vgg16 mobilenet_v2"] [--batch 16] [--threads 2] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args engine_vs_pytorch "$@"
scripts/install-torch.sh >&2
scripts/build.sh >&2
# shellcheck disable=SC2086
models/make-bench-models.sh --models "${MODELS// /,}" >&2

roofline_json=$(build/bin/ppml-bench-conv --threads "$THREADS" --batch "$BATCH" --seconds 1 2>/dev/null | tail -n 1)
roofline=$(field "$roofline_json" roofline_gflops)
isa=$(field "$roofline_json" isa)
echo "isa=$isa threads=$THREADS batch=$BATCH roofline_gflops=$roofline"
printf '%-14s %12s %12s %8s %10s %10s\n' model ours_img_s torch_img_s ratio ours_gflops of_roofline
for m in $MODELS; do
  ours=$(build/bin/ppml bench engine --model "build/models/$m.onnx" --batch "$BATCH" --precision fp32 \
           --seconds "$SECONDS_PER_RUN" --threads "$THREADS" --json 2>/dev/null | tail -n 1)
  torch=$(/usr/bin/python3 bench/pytorch_peer.py --model "$m" --batch "$BATCH" --threads "$THREADS" \
            --seconds "$SECONDS_PER_RUN" 2>/dev/null | tail -n 1)
  ours_tp=$(field "$ours" throughput_per_s)
  torch_tp=$(field "$torch" throughput_per_s)
  gflops=$(field "$ours" gflops)
  /usr/bin/python3 - "$m" "$ours_tp" "$torch_tp" "$gflops" "$roofline" <<'PY'
import sys
m, ours, torch, gflops, roof = sys.argv[1], *map(float, sys.argv[2:])
print(f"{m:<14} {ours:12.1f} {torch:12.1f} {ours / torch:7.2f}x {gflops:10.1f} {gflops / roof:9.0%}")
PY
done
