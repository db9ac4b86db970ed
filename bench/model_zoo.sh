#!/usr/bin/env bash
# The engine on more torchvision classifiers than the benchmark three: output
# against PyTorch, FP32 and INT8 throughput, INT8 against the literal QDQ
# model (see bench/model_zoo.py). Installs PyTorch and builds when missing.
#
#   bench/model_zoo.sh [--models "resnet18 convnext_tiny ..."] [--batch 16] [--threads 2] [--seconds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-torch.sh >&2
scripts/build.sh >&2
exec /usr/bin/python3 bench/model_zoo.py "$@"
