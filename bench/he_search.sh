#!/usr/bin/env bash
# HE-friendly RNNs: both models × both searches (the method's DFS and our
# sensitivity-greedy) × both fits (lsq on [-8,8], per-cell range), on the
# 10,000 Fashion-MNIST test images. Writes, under OUT (default build-he/he-bench):
#   results.csv     one row per run (the --json fields)
#   visited.csv     every assignment every search visited
#   accuracy_vs_depth.png   accuracy against total activation depth, DFS and
#                           sensitivity in two colours (gnuplot; skipped with a
#                           message when gnuplot is missing)
#   <model>_<method>_<fit>.onnx / .spec.json  the approximated models
# and prints the table.
#
#   bench/he_search.sh [--build build-he] [--threads 2] [--tolerance 0.02] [--out DIR] [--costs FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-he
THREADS=2
TOLERANCE=0.02
OUT=""
COSTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --tolerance) TOLERANCE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --costs) COSTS=(--costs "$2"); shift 2 ;;
    *) echo "he_search: unknown argument $1 (use --build, --threads, --tolerance, --out, --costs)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$BUILD/he-bench}"
PPML="$BUILD/bin/ppml"
[ -x "$PPML" ] || { echo "he_search: $PPML not built (cmake --build $BUILD --target ppml)" >&2; exit 1; }
mkdir -p "$OUT"
results="$OUT/results.csv"
visited="$OUT/visited.csv"
: > "$OUT/results.jsonl"
echo "model,cell,method,fit,accuracy,depth,bootstraps,degrees" > "$visited.tmp"

for model in he_rnn he_gru; do
  for fit in lsq range; do
    for method in dfs sensitivity; do
      name="${model}_${method}_${fit}"
      echo "he_search: $name" >&2
      "$PPML" he search --model "models/$model.onnx" --dataset fashion-mnist:test --degrees 3,7,17 \
        --tolerance "$TOLERANCE" --method "$method" --fit "$fit" --threads "$THREADS" "${COSTS[@]}" \
        --out "$OUT/$name.onnx" --spec-out "$OUT/$name.spec.json" --visited-csv "$OUT/$name.visited.csv" \
        --check-onnx --json | tail -n 1 >> "$OUT/results.jsonl"
      tail -n +2 "$OUT/$name.visited.csv" | cut -d, -f1-4,6-9 >> "$visited.tmp"
    done
  done
done
mv "$visited.tmp" "$visited"

/usr/bin/python3 - "$OUT/results.jsonl" "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
keys = ["model", "cell", "method", "fit", "baseline_accuracy", "all17_accuracy", "approx_accuracy", "onnx_accuracy",
        "met_target", "depth", "depth_all17", "depth_ratio", "bootstraps", "bootstraps_all17", "evaluations",
        "search_seconds", "he_estimated_ms", "he_estimated_ms_all17", "isa", "threads"]
with open(sys.argv[2], "w") as f:
    f.write(",".join(keys + ["degrees"]) + "\n")
    for r in rows:
        f.write(",".join(str(r.get(k, "")) for k in keys) + "," + " ".join(map(str, r["degrees"])) + "\n")
print(f"{'model':<7} {'method':<12} {'fit':<6} {'FP32':>7} {'all-17':>7} {'approx':>7} {'onnx':>7} "
      f"{'depth':>9} {'ratio':>6} {'boots':>7} {'evals':>6} {'sec':>7} {'est. HE s':>10}")
for r in rows:
    cell = r["cell"]
    print(f"{cell:<7} {r['method']:<12} {r['fit']:<6} {100*r['baseline_accuracy']:7.2f} {100*r['all17_accuracy']:7.2f} "
          f"{100*r['approx_accuracy']:7.2f} {100*r.get('onnx_accuracy', float('nan')):7.2f} "
          f"{r['depth']:>4}/{r['depth_all17']:<4} {100*r['depth_ratio']:5.1f}% {r['bootstraps']:>3}/{r['bootstraps_all17']:<3} "
          f"{r['evaluations']:>6} {r['search_seconds']:7.1f} {r['he_estimated_ms']/1000:10.1f}")
PY

if command -v gnuplot >/dev/null; then
  # One data block per (model, method); fits share a colour per method, point shape per fit.
  plot_data="$OUT/plot.dat"
  : > "$plot_data"
  for model in rnn gru; do
    for method in dfs sensitivity; do
      for fit in lsq range; do
        echo "# $model $method $fit" >> "$plot_data"
        awk -F, -v m="$model" -v me="$method" -v f="$fit" 'NR > 1 && $2 == m && $3 == me && $4 == f { print $6, 100 * $5 }' \
          "$visited" >> "$plot_data"
        printf '\n\n' >> "$plot_data"
      done
    done
  done
  gnuplot <<GP
set terminal pngcairo size 1400,600 font ",10"
set output "$OUT/accuracy_vs_depth.png"
set multiplot layout 1,2 title "Visited assignments: accuracy vs total activation depth (Fashion-MNIST test, tolerance $TOLERANCE)"
set xlabel "total activation depth (levels)"
set ylabel "test accuracy (%)"
set key bottom right
set grid
set title "SimpleRNN (28 steps, 32 hidden)"
plot "$plot_data" index 0 with points pt 7 ps 0.5 lc rgb "#1f77b4" title "DFS (method), lsq", \
     "" index 1 with points pt 6 ps 0.6 lc rgb "#1f77b4" title "DFS (method), range", \
     "" index 2 with points pt 7 ps 0.6 lc rgb "#d62728" title "sensitivity (ours), lsq", \
     "" index 3 with points pt 6 ps 0.7 lc rgb "#d62728" title "sensitivity (ours), range"
set title "GRU (28 steps, 32 hidden)"
plot "$plot_data" index 4 with points pt 7 ps 0.5 lc rgb "#1f77b4" title "DFS (method), lsq", \
     "" index 5 with points pt 6 ps 0.6 lc rgb "#1f77b4" title "DFS (method), range", \
     "" index 6 with points pt 7 ps 0.6 lc rgb "#d62728" title "sensitivity (ours), lsq", \
     "" index 7 with points pt 6 ps 0.7 lc rgb "#d62728" title "sensitivity (ours), range"
unset multiplot
GP
  echo "he_search: plot $OUT/accuracy_vs_depth.png" >&2
else
  echo "he_search: gnuplot not found; no plot (the data is in $visited)" >&2
fi
echo "he_search: results $results, visited $visited" >&2
