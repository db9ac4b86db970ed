#!/usr/bin/env bash
# Installs Debian's PyTorch stack, needed only by models/ and bench/pytorch_peer.py
# (the C++ build and tests never need it). Idempotent: installs only what is missing.
# Scripts that use these packages must run under /usr/bin/python3 (Debian's interpreter).
set -euo pipefail

PKGS=(python3-torch python3-torchvision python3-onnx python3-numpy)

missing=()
for p in "${PKGS[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    echo "install-torch: $p already installed"
  else
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-torch: nothing to do"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Only refresh the index when apt has never fetched one (fresh container).
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  echo "install-torch: apt-get update"
  $SUDO apt-get update
fi
echo "install-torch: apt-get install ${missing[*]}"
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
  # A stale index can make install fail on 404s; refresh once and retry.
  echo "install-torch: install failed, running apt-get update and retrying"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
/usr/bin/python3 -c 'import torch, torchvision, onnx, numpy; print("install-torch: torch", torch.__version__, "torchvision", torchvision.__version__, "onnx", onnx.__version__)'
