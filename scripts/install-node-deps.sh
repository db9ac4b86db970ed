#!/usr/bin/env bash
# Installs the npm packages the project runs with node: node and npm from
# Debian when the commands are missing, then, for each folder below, the
# packages pinned in its package-lock.json into its node_modules (npm ci,
# install scripts off):
#   tests/interop  the EHBP/HPKE interop test (ctest ehbp_interop)
#   he/seal        Microsoft SEAL as WebAssembly (node-seal) for the real CKKS
#                  check of the HE-friendly RNNs (`ppml he bench`, ctest he_seal_*)
# Idempotent: a second run with the same lock files does nothing and needs no
# network (a stamp per folder records the lock file it installed).
#
# Why not in install-deps.sh's PACKAGES: that list is checked with dpkg-query
# by package name, and NodeSource's nodejs (common on developer machines)
# ships npm itself while declaring Conflicts: npm, so asking apt for Debian's
# npm there fails. Here node and npm are looked for as commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDERS=(tests/interop he/seal)

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-node-deps: installing ${missing[*]}"
  source scripts/apt-install.sh
  apt_install "${missing[@]}"
fi

# Node trusts only its bundled CAs; also trust the system's (a proxy's CA
# that an organisation installed there, say).
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

# npm ci empties node_modules first, so the stamp only survives a complete install.
install_folder() {
  local dir=$1
  local stamp=$dir/node_modules/.ppml-package-lock.sha256
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "install-node-deps: $dir/node_modules matches package-lock.json (node $(node --version))"
    return 0
  fi
  echo "install-node-deps: npm ci in $dir (node $(node --version), npm $(npm --version 2>/dev/null))"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund)
  echo "$want" > "$stamp"
}

for dir in "${FOLDERS[@]}"; do
  install_folder "$dir"
done
echo "install-node-deps: done"
