#!/usr/bin/env bash
# Trains the HE study models and writes models/he_rnn.{onnx,json} and
# models/he_gru.{onnx,json}, with the settings that made the committed files
# (SimpleRNN: 8 epochs at lr 3e-3 and a stronger range penalty, since a tanh
# RNN trains slowly and its pre-activations must stay inside the method's
# [-8, 8]; GRU: 5 epochs at lr 1e-2). About 10 + 20 minutes on 2 busy cores.
# With arguments, runs train_he_rnn.py with exactly those instead
# (e.g. --cells gru --epochs 4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-torch.sh"
train="$root/models/train_he_rnn.py"
echo "make-he-rnns: training (Debian /usr/bin/python3)"
if [ $# -gt 0 ]; then exec /usr/bin/python3 "$train" "$@"; fi
/usr/bin/python3 "$train" --cells rnn --epochs 8 --batch 128 --lr 3e-3 --range-every 8 --range-weight 0.5 --threads 1
/usr/bin/python3 "$train" --cells gru --epochs 5 --batch 256 --lr 1e-2 --range-every 16 --range-weight 0.1 --threads 2
