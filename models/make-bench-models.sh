#!/usr/bin/env bash
# Exports the random-weight torchvision benchmark models (resnet50, vgg16, mobilenet_v2)
# to build/models/*.onnx (not committed). Extra arguments go to export_torchvision.py,
# e.g. --models resnet50 --force, or --out DIR.
# PPML_TORCH_PYTHON=/path/to/python3 uses that interpreter's torch instead of
# installing Debian's (a machine where torch comes from elsewhere).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PPML_TORCH_PYTHON:-/usr/bin/python3}"
if [ -z "${PPML_TORCH_PYTHON:-}" ]; then "$root/scripts/install-torch.sh"; fi
cd "$root"
exec "$python" "$root/models/export_torchvision.py" "$@"
