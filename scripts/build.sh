#!/usr/bin/env bash
# Configures (once) and builds ppml-serving into build/ (Release unless
# BUILD_TYPE says otherwise). Incremental: a second run only rebuilds changes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  echo "build: configuring $BUILD_DIR ($BUILD_TYPE)"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
fi
echo "build: compiling (this takes a few minutes the first time)"
cmake --build "$BUILD_DIR" -j "$(nproc)"
