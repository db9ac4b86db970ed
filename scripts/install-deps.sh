#!/usr/bin/env bash
# Installs the Debian packages ppml-serving builds, tests and runs with; only
# what is missing, so a second run does nothing. The one list of build and
# test dependencies: run.sh, test.sh and the Dockerfile all call this.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libdnnl-dev ocl-icd-opencl-dev   # oneDNN (its CMake config also wants OpenCL)
  libonnx-dev libprotobuf-dev protobuf-compiler  # ONNX model import
  libyaml-cpp-dev                  # configuration files
  libcli11-dev                     # the ppml command line
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and micro-benchmarks
  zlib1g-dev                       # gzip'ed datasets
  libssl-dev libhiredis-dev libevent-dev libsimdjson-dev  # crypto, Redis, HTTP, JSON
  redis-server                     # the real queue, also in tests
  dataset-fashion-mnist            # real data for the demo, tests and evaluation
  libonnx-testdata                 # ONNX's backend test suite (conformance)
  libpng-dev                       # PNG inputs of `ppml infer`
  python3 python3-cryptography python3-numpy python3-requests  # the Python client and its tests
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
source scripts/apt-install.sh
apt_install "${missing[@]}"
echo "install-deps: done"
