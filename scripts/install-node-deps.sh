#!/usr/bin/env bash
# Installs what the interop test (ctest ehbp_interop, tests/interop) runs
# with: node and npm from Debian when the commands are missing, then the npm
# packages pinned in tests/interop/package-lock.json into
# tests/interop/node_modules (npm ci, install scripts off). Idempotent: a
# second run with the same lock file does nothing and needs no network.
#
# Why not in install-deps.sh's PACKAGES: that list is checked with dpkg-query
# by package name, and NodeSource's nodejs (common on developer machines)
# ships npm itself while declaring Conflicts: npm, so asking apt for Debian's
# npm there fails. Here node and npm are looked for as commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=tests/interop

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
stamp=$DIR/node_modules/.ppml-package-lock.sha256
want=$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install-node-deps: $DIR/node_modules matches package-lock.json (node $(node --version))"
  exit 0
fi
echo "install-node-deps: npm ci in $DIR (node $(node --version), npm $(npm --version 2>/dev/null))"
(cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund)
echo "$want" > "$stamp"
echo "install-node-deps: done"
