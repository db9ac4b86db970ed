#!/usr/bin/env bash
# Trains the HE study models and writes models/he_rnn.{onnx,json} and
# models/he_gru.{onnx,json}. Extra arguments go to train_he_rnn.py
# (e.g. --cells gru --epochs 4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-torch.sh"
echo "make-he-rnns: training (Debian /usr/bin/python3)"
exec /usr/bin/python3 "$root/models/train_he_rnn.py" "$@"
