#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest): unit tests,
# the ONNX conformance suite and the model accuracy check.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
