#!/bin/sh
# he_seal_bench_errors: `ppml he bench` with a bad spec fails fast (before
# any CKKS work) with a message naming the file and the field; without node
# or the npm packages it says how to install them.
#   $1: the ppml binary, $2: he/seal
set -u
ppml=${1:?usage: bench_errors_test.sh PPML HE_SEAL_DIR}
seal_dir=${2:?usage: bench_errors_test.sh PPML HE_SEAL_DIR}
dir=$(mktemp -d /tmp/he-bench-errors-XXXXXX)
trap 'rm -rf "$dir"' EXIT
failures=0

# expect NAME WANT_EXIT WANT_TEXT COMMAND...: runs COMMAND; checks the exit status and stderr.
expect() {
  name=$1 want_exit=$2 want_text=$3
  shift 3
  "$@" >"$dir/out" 2>"$dir/err"
  got=$?
  if [ "$got" -ne "$want_exit" ] || ! grep -qF -- "$want_text" "$dir/err"; then
    echo "FAIL $name: exit $got (want $want_exit), stderr:" >&2
    cat "$dir/err" >&2
    echo "  (wanted it to contain: $want_text)" >&2
    failures=$((failures + 1))
  else
    echo "ok   $name: $(head -n 1 "$dir/err")"
  fi
}

expect missing-spec 2 "File does not exist" "$ppml" he bench --spec "$dir/absent.json"

printf '{"format": "ppml-he-rnn/1", ' >"$dir/truncated.json"
expect not-json 1 "$dir/truncated.json: not valid JSON" "$ppml" he bench --spec "$dir/truncated.json"

node "$seal_dir/random_spec.mjs" --cell rnn --degree 3 --steps 2 --samples 2 --out "$dir/good.json" 2>/dev/null
node -e '
  const fs = require("fs");
  const [good, dir] = process.argv.slice(1);
  const edit = (name, change) => { const s = JSON.parse(fs.readFileSync(good)); change(s); fs.writeFileSync(`${dir}/${name}`, JSON.stringify(s)); };
  edit("coeff.json", (s) => { s.cells[1].tanh.coeffs[2] = "x"; });
  edit("shape.json", (s) => { s.weights.rnn.U.pop(); });
  edit("format.json", (s) => { s.format = "ppml-he-rnn/0"; });
  edit("budget.json", (s) => { s.budget = 2; });
' "$dir/good.json" "$dir"
expect bad-coefficient 1 "coeff.json: cells[1].tanh.coeffs[2]: expected a finite number" "$ppml" he bench --spec "$dir/coeff.json"
expect bad-shape 1 "shape.json: weights.rnn.U: expected 32 elements, got 31" "$ppml" he bench --spec "$dir/shape.json"
expect bad-format 1 'format: expected "ppml-he-rnn/1"' "$ppml" he bench --spec "$dir/format.json"
expect too-deep 1 "budget.json: cells[0].tanh: degree 3 needs 2 levels" "$ppml" he bench --spec "$dir/budget.json"
expect bad-n 2 "--n: 8192 not in" "$ppml" he bench --n 8192

# Without the npm packages or without node: a clear error saying how to install them.
mkdir -p "$dir/seal-without-packages"
: >"$dir/seal-without-packages/ckks.mjs"
expect no-node-modules 1 "has no node-seal; run scripts/install-node-deps.sh" \
  env PPML_HE_SEAL_DIR="$dir/seal-without-packages" "$ppml" he bench
expect no-node 1 "node is not installed (not on PATH); run scripts/install-node-deps.sh" \
  env PATH="$dir/empty-path" "$ppml" he bench

[ "$failures" -eq 0 ] && echo "he_seal_bench_errors: ok"
exit "$failures"
