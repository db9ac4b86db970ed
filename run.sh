#!/usr/bin/env bash
# One command to a working ppml-serving on a fresh Debian machine: installs
# what is missing, builds, and shows the engine working on real data
# (Fashion-MNIST test images through the project's committed ONNX model).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh
echo
echo "run: classifying the 10,000 Fashion-MNIST test images with models/fashion_cnn.onnx (FP32, 2 threads)"
build/bin/ppml eval --model models/fashion_cnn.onnx --dataset fashion-mnist:test --threads 2 --json
