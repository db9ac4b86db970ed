#!/usr/bin/env bash
# The real CKKS figures of issue 10 (HE-friendly RNNs), with Microsoft SEAL
# (npm node-seal, WebAssembly, one thread) through `ppml he bench`:
#   1. per-operation costs at N = 2^15 (the cost model's input: costs_n32768.json,
#      the format `ppml he search --costs FILE` reads) and at N = 2^14;
#   2. each fitted polynomial of each spec evaluated encrypted (error against
#      the plaintext polynomial);
#   3. the approximated RNN and GRU encrypted end to end on --images test
#      images at N = 2^14: agreement with the plaintext simulation, seconds
#      per image measured and estimated, key-holder refreshes.
# Everything lands in --out (default build/bench/he); a table at the end.
#
#   bench/he_encrypted.sh --rnn-spec FILE --gru-spec FILE [--images 20] [--out DIR]
#
# The specs come from `ppml he search ... --spec-out FILE`. A spec not given
# is replaced by random (untrained) weights from he/seal/random_spec.mjs,
# which checks the machinery but says nothing about the trained models; the
# table marks it "random".
set -euo pipefail
cd "$(dirname "$0")/.."
RNN_SPEC="" GRU_SPEC="" IMAGES=20 OUT=build/bench/he
while [ $# -gt 0 ]; do
  case "$1" in
    --rnn-spec) RNN_SPEC="$2"; shift 2 ;;
    --gru-spec) GRU_SPEC="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "he_encrypted: unknown argument $1 (use --rnn-spec, --gru-spec, --images, --out)" >&2; exit 2 ;;
  esac
done
PPML=${PPML:-build/bin/ppml}
scripts/install-node-deps.sh >&2
[ -x "$PPML" ] || scripts/build.sh >&2
mkdir -p "$OUT"

# 1. Per-operation costs.
for n in 32768 16384; do
  echo "he_encrypted: per-operation costs at N=$n" >&2
  "$PPML" he bench --n "$n" --details-out "$OUT/costs_n$n.details.json" >&2
  /usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["costs"]))' \
    "$OUT/costs_n$n.details.json" >"$OUT/costs_n$n.json"
done

# 2 and 3, per cell.
declare -A SOURCE
for cell in rnn gru; do
  spec_var=${cell^^}_SPEC
  spec=${!spec_var}
  SOURCE[$cell]=trained
  if [ -z "$spec" ]; then
    spec="$OUT/${cell}_random_spec.json"
    node he/seal/random_spec.mjs --cell "$cell" --degree 7 --samples "$IMAGES" --out "$spec"
    SOURCE[$cell]=random
  fi
  echo "he_encrypted: $cell (${SOURCE[$cell]} weights, $spec): encrypted polynomials" >&2
  node he/seal/ckks.mjs poly --spec "$spec" --n 16384 --json | tee "$OUT/${cell}_poly.txt" >&2
  tail -n 1 "$OUT/${cell}_poly.txt" >"$OUT/${cell}_poly.json"
  echo "he_encrypted: $cell: encrypted end to end on $IMAGES images" >&2
  "$PPML" he bench --spec "$spec" --images "$IMAGES" --n 16384 --run-n 16384 \
    --details-out "$OUT/${cell}_run.json" >&2
done

/usr/bin/python3 - "$OUT" "${SOURCE[rnn]}" "${SOURCE[gru]}" <<'PY'
import json, sys
out, sources = sys.argv[1], {"rnn": sys.argv[2], "gru": sys.argv[3]}
for n in (32768, 16384):
    c = json.load(open(f"{out}/costs_n{n}.json"))
    print(f"N={n}: encrypt {c['encrypt_ms']:.1f} ms, plain multiply {c['plain_multiply_ms']:.1f} ms, "
          f"multiply+relin+rescale {c['multiply_relin_rescale_ms']:.1f} ms, rotate {c['rotate_ms']:.1f} ms, "
          f"add {c['add_ms']:.2f} ms")
print(f"{'cell':<5} {'weights':<8} {'poly max err':>12} {'images':>6} {'agree':>6} {'s/img meas':>10} "
      f"{'s/img est':>9} {'est/meas':>8} {'refresh/img':>11} {'max logit err':>13}")
for cell in ("rnn", "gru"):
    poly = json.load(open(f"{out}/{cell}_poly.json"))
    r = json.load(open(f"{out}/{cell}_run.json"))["rnn"]
    print(f"{cell:<5} {sources[cell]:<8} {poly['max_abs_error']:12.2e} {r['images']:6d} {r['agreement']:6.2f} "
          f"{r['seconds_per_image_measured']:10.3f} {r['seconds_per_image_estimated']:9.3f} "
          f"{r['estimate_over_measured']:8.3f} {r['refreshes_per_image']:11.1f} {r['max_abs_logit_error']:13.2e}")
PY
