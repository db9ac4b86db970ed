#!/usr/bin/env bash
# Exports the random-weight torchvision benchmark models (resnet50, vgg16, mobilenet_v2)
# to build/models/*.onnx (not committed). Extra arguments go to export_torchvision.py,
# e.g. --models resnet50 --force, or --out DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-torch.sh"
cd "$root"
exec /usr/bin/python3 "$root/models/export_torchvision.py" "$@"
