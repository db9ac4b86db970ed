#!/usr/bin/env bash
# HE-friendly RNNs: both models × both searches (the method's DFS and our
# sensitivity-greedy, on the method's degrees 3,7,17; ours also with degree 15
# added) × the fits (lsq on [-8,8], per-cell range, per-cell distribution-
# weighted), on the 10,000 Fashion-MNIST test images. Writes, under OUT
# (default build/bench/he-search):
#   results.csv     one row per run (the --json fields)
#   visited.csv     every assignment every search visited
#   accuracy_vs_depth.png   accuracy against total activation depth, DFS and
#                           sensitivity in two colours (gnuplot; skipped with a
#                           message when gnuplot is missing)
#   <model>_<method>_<fit>.onnx / .spec.json  the approximated models
# and prints the table.
#
#   bench/he_search.sh [--build build] [--threads 2] [--tolerance 0.02] [--out DIR] [--costs FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
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
OUT="${OUT:-$BUILD/bench/he-search}"
PPML="$BUILD/bin/ppml"
[ -x "$PPML" ] || { echo "he_search: $PPML not built (cmake --build $BUILD --target ppml)" >&2; exit 1; }
mkdir -p "$OUT"
results="$OUT/results.csv"
visited="$OUT/visited.csv"
: > "$OUT/results.jsonl"
echo "degree_set,model,cell,method,fit,accuracy,depth,bootstraps,degrees" > "$visited.tmp"

# The method's degree set (3,7,17) for both searches and all three fits, then
# ours with degree 15 added (4 levels, where 17 costs 5 like 31: 2^k - 1 is
# the cheapest degree per depth) on the distribution-weighted fits.
CONFIGS="dfs:3,7,17:lsq,range,dist sensitivity:3,7,17:lsq,range,dist sensitivity:3,7,15,17:dist"
for model in he_rnn he_gru; do
  for config in $CONFIGS; do
    IFS=: read -r method degrees fits <<<"$config"
    for fit in ${fits//,/ }; do
      tag="${degrees//,/-}"  # 3-7-17: no commas inside CSV fields
      name="${model}_${method}_${fit}_${tag}"
      echo "he_search: $name" >&2
      "$PPML" he search --model "models/$model.onnx" --dataset fashion-mnist:test --degrees "$degrees" \
        --tolerance "$TOLERANCE" --method "$method" --fit "$fit" --threads "$THREADS" "${COSTS[@]}" \
        --out "$OUT/$name.onnx" --spec-out "$OUT/$name.spec.json" --visited-csv "$OUT/$name.visited.csv" \
        --check-onnx --json | tail -n 1 | sed "s/^{/{\"degree_set\":\"$tag\",/" >> "$OUT/results.jsonl"
      tail -n +2 "$OUT/$name.visited.csv" | cut -d, -f1-4,6-9 | sed "s/^/$tag,/" >> "$visited.tmp"
    done
  done
done
mv "$visited.tmp" "$visited"

/usr/bin/python3 - "$OUT/results.jsonl" "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
keys = ["model", "cell", "method", "degree_set", "fit", "baseline_accuracy", "all17_accuracy", "approx_accuracy", "onnx_accuracy",
        "met_target", "depth", "depth_all17", "depth_ratio", "bootstraps", "bootstraps_all17", "evaluations",
        "search_seconds", "he_estimated_ms", "he_estimated_ms_all17", "isa", "threads"]
with open(sys.argv[2], "w") as f:
    f.write(",".join(keys + ["degrees"]) + "\n")
    for r in rows:
        f.write(",".join(str(r.get(k, "")) for k in keys) + "," + " ".join(map(str, r["degrees"])) + "\n")
print(f"{'model':<5} {'method':<12} {'degrees':<10} {'fit':<6} {'FP32':>7} {'all-17':>7} {'approx':>7} {'onnx':>7} "
      f"{'depth':>9} {'ratio':>6} {'boots':>7} {'evals':>6} {'sec':>7} {'est. HE s':>10}")
for r in rows:
    cell = r["cell"]
    print(f"{cell:<5} {r['method']:<12} {r['degree_set']:<10} {r['fit']:<6} {100*r['baseline_accuracy']:7.2f} {100*r['all17_accuracy']:7.2f} "
          f"{100*r['approx_accuracy']:7.2f} {100*r.get('onnx_accuracy', float('nan')):7.2f} "
          f"{r['depth']:>4}/{r['depth_all17']:<4} {100*r['depth_ratio']:5.1f}% {r['bootstraps']:>3}/{r['bootstraps_all17']:<3} "
          f"{r['evaluations']:>6} {r['search_seconds']:7.1f} {r['he_estimated_ms']/1000:10.1f}")
PY

if command -v gnuplot >/dev/null; then
  # One data block per (model, search, degree set, fit): colour per search
  # (the method's DFS blue, ours red, ours with degree 15 orange), point shape per fit.
  /usr/bin/python3 - "$visited" "$OUT" "$TOLERANCE" <<'PY' | gnuplot
import collections, csv, sys
visited, out, tolerance = sys.argv[1:4]
blocks = collections.OrderedDict()
for row in csv.DictReader(open(visited)):
    key = (row["cell"], row["method"], row["degree_set"], row["fit"])
    blocks.setdefault(key, []).append((int(row["depth"]), 100 * float(row["accuracy"])))
with open(f"{out}/plot.dat", "w") as f:
    for points in blocks.values():
        f.writelines(f"{d} {a}\n" for d, a in points)
        f.write("\n\n")
shapes = {"lsq": 7, "range": 6, "dist": 5}
print('set terminal pngcairo size 1400,600 font ",10"')
print(f'set output "{out}/accuracy_vs_depth.png"')
print(f'set multiplot layout 1,2 title "Visited assignments: accuracy vs total activation depth (Fashion-MNIST test, tolerance {tolerance})"')
print('set xlabel "total activation depth (levels)"; set ylabel "test accuracy (%)"; set key bottom right; set grid')
for cell, title in (("rnn", "SimpleRNN (28 steps, 32 hidden)"), ("gru", "GRU (28 steps, 32 hidden)")):
    parts = []
    for index, (c, method, degree_set, fit) in enumerate(blocks):
        if c != cell:
            continue
        ours = method != "dfs"
        colour = "#1f77b4" if not ours else ("#d62728" if degree_set == "3-7-17" else "#ff7f0e")
        label = ("DFS (method)" if not ours else "sensitivity (ours)") + f" {degree_set.replace('-', ',')}, {fit}"
        parts.append(f'"{out}/plot.dat" index {index} with points pt {shapes.get(fit, 1)} ps 0.5 lc rgb "{colour}" title "{label}"')
    print(f'set title "{title}"')
    print("plot " + ", ".join(parts) if parts else "clear")
print("unset multiplot")
PY
  echo "he_search: plot $OUT/accuracy_vs_depth.png" >&2
else
  echo "he_search: gnuplot not found; no plot (the data is in $visited)" >&2
fi
echo "he_search: results $results, visited $visited" >&2
