#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest): unit tests,
# the ONNX conformance suite, the model accuracy checks, real redis-server
# integration tests and the HPKE/EHBP interop test against npm peers.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/install-node-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
