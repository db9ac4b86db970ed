#!/usr/bin/env bash
# Trains the Fashion-MNIST CNN and writes models/fashion_cnn.{onnx,json}.
# Extra arguments go to train_fashion_cnn.py (e.g. --epochs 5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-torch.sh"
echo "make-fashion-cnn: training (Debian /usr/bin/python3)"
exec /usr/bin/python3 "$root/models/train_fashion_cnn.py" "$@"
