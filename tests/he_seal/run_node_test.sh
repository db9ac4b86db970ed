#!/bin/sh
# ctest entry of the he_seal node tests: runs $2 with node. Fails (exit 1,
# never a skip) when node or he/seal's npm packages ($1/node_modules) are
# missing, saying how to install them.
set -eu
seal_dir=${1:?usage: run_node_test.sh HE_SEAL_DIR TEST.mjs}
test_script=${2:?usage: run_node_test.sh HE_SEAL_DIR TEST.mjs}
if ! command -v node >/dev/null 2>&1; then
  echo "he_seal: FAIL: node is not installed; run scripts/install-node-deps.sh" >&2
  exit 1
fi
if [ ! -d "$seal_dir/node_modules/node-seal" ]; then
  echo "he_seal: FAIL: $seal_dir/node_modules has no node-seal; run scripts/install-node-deps.sh" >&2
  exit 1
fi
exec node "$test_script" "$seal_dir"
