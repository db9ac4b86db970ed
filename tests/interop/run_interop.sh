#!/bin/sh
# ctest entry of ehbp_interop: runs ehbp_interop.mjs with node against the
# C++ peer given as $1. Fails (exit 1, never a skip) when node or the pinned
# npm packages are missing, saying how to install them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
peer=${1:?usage: run_interop.sh PATH/TO/ehbp_interop_peer}

if ! command -v node >/dev/null 2>&1; then
  echo "ehbp_interop: FAIL: node is not installed; run scripts/install-node-deps.sh" >&2
  exit 1
fi
if [ ! -d "$here/node_modules" ]; then
  echo "ehbp_interop: FAIL: $here/node_modules is missing; run scripts/install-node-deps.sh" >&2
  exit 1
fi
exec node "$here/ehbp_interop.mjs" --peer "$peer"
