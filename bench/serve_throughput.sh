#!/usr/bin/env bash
# The whole service under load, end to end (HTTPS + HPKE/EHBP encryption +
# Redis + workers + enclave): starts `ppml serve` with a throughput config,
# runs `ppml bench serve` against its ready line (closed loop over a
# concurrency sweep, open loop at fixed rates), then the same service again
# without TLS and with plaintext requests to price TLS and encryption, each
# as a throughput ratio. Writes one CSV per run and a PNG plot (gnuplot, or
# matplotlib) into the output folder.
#
#   bench/serve_throughput.sh [--model fashion|fashion-int8|resnet50-int8]
#       [--concurrency 1,4,16,64,256] [--rates 25%,50%,75%,1000,2500]
#       [--seconds 5 (resnet50-int8: 30)] [--warmup 1 (resnet50-int8: 10)] [--out-dir build/bench-serve] [--connections 64]
#       [--uint8-input] [--no-variants] [--no-build] [--no-plot-install]
#
#   A rate such as 50% is that share of the best closed-loop throughput of the
#   same run (the goal "p99 at half the best rate" is the 50% point).
#
#   fashion        configs/bench-serve.yaml: models/fashion_cnn.onnx, FP32,
#                  2 workers x 1 thread, batches of up to 32
#   fashion-int8   the same with build/models/fashion_cnn.int8.onnx (`ppml
#                  model quantize --calib fashion-mnist:train:1000`)
#   resnet50-int8  the same config with build/models/resnet50.int8.onnx
#                  (models/make-bench-models.sh, then `ppml model quantize
#                  --calib random:32`, as bench/int8_vs_fp32.sh does), INT8,
#                  one worker with 2 oneDNN threads, batches of 16 (one
#                  image per request); also runs `ppml bench engine` on the
#                  same QDQ file (INT8, --batch 16 --threads 2) before and
#                  after the service and prints end-to-end throughput over
#                  the mean of the two
#
#   --uint8-input  serves the model rewritten by `ppml model uint8-input`
#                  (resnet50-int8 with ImageNet's mean and std, the Fashion
#                  models with v / 255): requests carry pixels, one byte per
#                  value instead of four; results go under MODEL-u8
#
# The binaries come from $BUILD_DIR (default build/, built by scripts/build.sh
# unless --no-build). gnuplot-nox is installed with apt-get when neither
# gnuplot nor python3-matplotlib is there (--no-plot-install: only say so).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
MODEL=fashion CONCURRENCY="" RATES="" SECONDS_PER_POINT="" WARMUP="" OUT_DIR=build/bench-serve CONNECTIONS=64
VARIANTS=1 BUILD=1 PLOT_INSTALL=1 UINT8_INPUT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --seconds) SECONDS_PER_POINT="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --out-dir) OUT_DIR="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --no-variants) VARIANTS=0; shift ;;
    --uint8-input) UINT8_INPUT=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-plot-install) PLOT_INSTALL=0; shift ;;
    *) echo "serve_throughput: unknown argument $1 (use --model, --concurrency, --rates, --seconds, --warmup," \
            "--out-dir, --connections, --uint8-input, --no-variants, --no-build, --no-plot-install)" >&2; exit 2 ;;
  esac
done
case "$MODEL" in
  # Up to 256 in flight: at 64 the two workers' batches of 32 are part empty
  # (a worker that finishes a batch finds only the replies' follow-ups
  # queued), so the sweep goes on to where the service, not the load, is the
  # limit. Latency at such depth is queueing; the p99 goal is the 50% point.
  fashion|fashion-int8) : "${CONCURRENCY:=1,4,16,64,256}" "${RATES:=25%,50%,75%,1000,2500}" "${SECONDS_PER_POINT:=5}" "${WARMUP:=1}" ;;
  # A longer warm-up: the enclave compiles a plan for each batch size it meets;
  # longer points: replies come 16 at a time, ~2 per second.
  resnet50-int8) : "${CONCURRENCY:=16,32,64}" "${RATES:=50%}" "${SECONDS_PER_POINT:=30}" "${WARMUP:=10}" ;;
  *) echo "serve_throughput: --model $MODEL: expected fashion, fashion-int8 or resnet50-int8" >&2; exit 2 ;;
esac
BUILD_DIR=${BUILD_DIR:-build}
BIN="$BUILD_DIR/bin"
if [ "$BUILD" = 1 ]; then BUILD_DIR="$BUILD_DIR" scripts/build.sh >&2; fi
for b in ppml ppml-frontend ppml-worker; do
  [ -x "$BIN/$b" ] || { echo "serve_throughput: $BIN/$b is missing (build it, or set BUILD_DIR)" >&2; exit 1; }
done
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
ROOT=$(pwd)

# ---- the configs: configs/bench-serve.yaml with single lines replaced ----
# make_config NAME [sed expressions...]: $OUT_DIR/NAME.yaml, every path absolute,
# its own state folder (sealed keys depend on the measured config).
make_config() {
  local name=$1
  shift
  sed -e "s|^  state_dir: .*|  state_dir: $OUT_DIR/state-$name|" \
      -e "s|^  onnx: \.\./|  onnx: $ROOT/|" \
      "$@" configs/bench-serve.yaml > "$OUT_DIR/$name.yaml"
  echo "$OUT_DIR/$name.yaml"
}
MODEL_SED=()
ENGINE_MODEL=""
SERVED=fashion
BATCH=1
if [ "$MODEL" = fashion-int8 ]; then
  int8_model=build/models/fashion_cnn.int8.onnx
  if [ ! -f "$int8_model" ] || [ "$int8_model" -ot models/fashion_cnn.onnx ]; then
    mkdir -p build/models
    "$BIN/ppml" model quantize --model models/fashion_cnn.onnx --calib fashion-mnist:train:1000 --method entropy \
      --out "$int8_model" --threads 2 >&2
  fi
  # The enclave keeps a compiled plan (constants, arena) for every batch size
  # it meets; the INT8 plans of batch sizes 1..32 outgrow 93 MiB, and the
  # enclave then rebuilds evicted plans (p99 16.5 ms at 50% instead of 8.2,
  # measured): give it room for all of them.
  MODEL_SED=(-e "s|^  onnx: .*|  onnx: $ROOT/$int8_model|" -e "s|^  precision: fp32$|  precision: int8|"
             -e "s|^  budget_mib: .*|  budget_mib: 512|")
elif [ "$MODEL" = resnet50-int8 ]; then
  [ -f build/models/resnet50.onnx ] || models/make-bench-models.sh --models resnet50 >&2
  ENGINE_MODEL=$(int8_model resnet50)
  SERVED=resnet50
  # One worker with both cores' threads, as `ppml bench engine --threads 2`
  # runs; batches of 16 single-image requests; every weight resident.
  MODEL_SED=(-e "s|^  name: fashion$|  name: resnet50|"
             -e "s|^  onnx: .*|  onnx: $ROOT/$ENGINE_MODEL|"
             -e "s|^  precision: fp32$|  precision: int8|"
             -e "s|^  workers: 2$|  workers: 1|"
             -e "s|^  threads: 1 .*|  threads: 2|"
             -e "s|^    max_batch_size: .*|    max_batch_size: 16|"
             -e "s|^  default_timeout_ms: .*|  default_timeout_ms: 60000|"
             -e "s|^  budget_mib: .*|  budget_mib: 4096|"
             -e "s|^  weights: .*|  weights: resident|")
fi
if [ "$UINT8_INPUT" = 1 ]; then
  case "$MODEL" in
    fashion) served_onnx=models/fashion_cnn.onnx normalize=() ;;
    fashion-int8) served_onnx=$int8_model normalize=() ;;
    resnet50-int8) served_onnx=$ENGINE_MODEL normalize=(--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225) ;;
  esac
  pixel_model=build/models/$(basename "$served_onnx" .onnx).u8.onnx
  if [ ! -f "$pixel_model" ] || [ "$pixel_model" -ot "$served_onnx" ]; then
    "$BIN/ppml" model uint8-input --model "$served_onnx" --out "$pixel_model" "${normalize[@]}" >&2
  fi
  MODEL_SED+=(-e "s|^  onnx: .*|  onnx: $ROOT/$pixel_model|")
  if [ -n "$ENGINE_MODEL" ]; then ENGINE_MODEL=$pixel_model; fi
  MODEL=$MODEL-u8
fi
CFG_MAIN=$(make_config "$MODEL" "${MODEL_SED[@]}")
CFG_NOTLS=$(make_config "$MODEL-notls" "${MODEL_SED[@]}" -e '/^frontend:$/a\  tls:\n    enabled: false')
CFG_PLAIN=$(make_config "$MODEL-plaintext" "${MODEL_SED[@]}" \
  -e 's|^  allow_plaintext: false$|  allow_plaintext: true|' \
  -e '/^enclave:$/a\  config_entries: ["allow_plaintext=true"]')

SERVE_PID=""
stop_serve() {
  if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
  fi
  SERVE_PID=""
}
trap stop_serve EXIT

# start_serve CONFIG NAME: starts ppml serve, waits for its ready line, sets READY.
start_serve() {
  local config=$1 name=$2 out="$OUT_DIR/serve-$2.out"
  : > "$out"
  echo "serve_throughput: ppml serve --config $config" >&2
  "$BIN/ppml" serve --config "$config" > "$out" 2> "$OUT_DIR/serve-$name.log" &
  SERVE_PID=$!
  for _ in $(seq 1 3000); do
    if READY=$(grep -m1 '^ready: ' "$out"); then return 0; fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
      echo "serve_throughput: ppml serve exited before it was ready; $OUT_DIR/serve-$name.log:" >&2
      tail -n 30 "$OUT_DIR/serve-$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "serve_throughput: no ready line after 300 s; see $OUT_DIR/serve-$name.log" >&2
  exit 1
}
ready_field() { tr ' ' '\n' <<< "$READY" | sed -n "s/^$1=//p"; }

# run_bench NAME [extra flags]: one `ppml bench serve` on the running service;
# the CSV goes to $OUT_DIR/NAME.csv, the JSON line into $OUT_DIR/NAME.json.
run_bench() {
  local name=$1
  shift
  local url ca pub meas
  url=$(ready_field url) ca=$(ready_field ca) pub=$(ready_field platform_pubkey) meas=$(ready_field measurement)
  echo "serve_throughput: $name: ppml bench serve --url $url --model $SERVED $*" >&2
  local ca_flag=()
  [[ "$url" == https://* ]] && ca_flag=(--ca "$ca")
  local status=0
  "$BIN/ppml" bench serve --url "$url" "${ca_flag[@]}" --platform-pubkey "$pub" --measurement "$meas" \
    --model "$SERVED" --batch "$BATCH" --seconds "$SECONDS_PER_POINT" --warmup "$WARMUP" \
    --connections "$CONNECTIONS" --csv "$OUT_DIR/$name.csv" --json "$@" \
    > "$OUT_DIR/$name.stdout" 2> "$OUT_DIR/$name.stderr" || status=$?
  grep -v '^{' "$OUT_DIR/$name.stdout" || true
  if [ "$status" -ne 0 ]; then
    tail -n 3 "$OUT_DIR/$name.stderr" >&2
    rm -f "$OUT_DIR/$name.json"
    return "$status"
  fi
  tail -n 1 "$OUT_DIR/$name.stdout" > "$OUT_DIR/$name.json"
}

# run_engine WHEN: `ppml bench engine` alone on the model the service runs,
# into ENGINE_JSON_<WHEN> ("null" when it fails). It runs before and after
# the service so that a machine whose speed drifts (it does, by 10-20% over
# minutes) is compared against the mean of both.
ENGINE_JSON_BEFORE=null ENGINE_JSON_AFTER=null
run_engine() {
  local when=$1 json
  # The QDQ file is INT8 already: --precision int8 runs it as it is.
  echo "== $MODEL: engine alone, $when (ppml bench engine --model $ENGINE_MODEL --precision int8 --batch 16 --threads 2) =="
  if json=$("$BIN/ppml" bench engine --model "$ENGINE_MODEL" --precision int8 --batch 16 --threads 2 \
              --seconds "$SECONDS_PER_POINT" --json 2> "$OUT_DIR/$MODEL-engine-$when.stderr" | tail -n 1) &&
     [[ "$json" == \{* ]]; then
    echo "$json" > "$OUT_DIR/$MODEL-engine-$when.json"
    printf -v "ENGINE_JSON_${when^^}" '%s' "$json"
  else
    echo "serve_throughput: ppml bench engine failed; see $OUT_DIR/$MODEL-engine-$when.stderr"
  fi
}
if [ -n "$ENGINE_MODEL" ]; then run_engine before; fi

# ---- 1: the service as deployed (TLS, encrypted requests) ----
rm -f "$OUT_DIR"/"$MODEL"*.csv "$OUT_DIR"/"$MODEL"*.json
start_serve "$CFG_MAIN" "$MODEL"
echo "== $MODEL: HTTPS + encryption (concurrency $CONCURRENCY; rates $RATES) ==" 
run_bench "$MODEL" --concurrency "$CONCURRENCY" --rates "$RATES"
stop_serve

if [ "$VARIANTS" = 1 ]; then
  # ---- 2: TLS off at the front-end (plain HTTP), closed loop only ----
  start_serve "$CFG_NOTLS" "$MODEL-notls"
  echo "== $MODEL: plain HTTP + encryption (closed loop) =="
  run_bench "$MODEL-notls" --concurrency "$CONCURRENCY" --rates none || echo "serve_throughput: the plain-HTTP run failed"
  stop_serve
  # ---- 3: plaintext requests (encryption off), TLS on, closed loop only ----
  start_serve "$CFG_PLAIN" "$MODEL-plaintext"
  echo "== $MODEL: HTTPS, plaintext requests (closed loop) =="
  if ! run_bench "$MODEL-plaintext" --concurrency "$CONCURRENCY" --rates none --plaintext; then
    reason=$(grep -m1 'plaintext inference unavailable' "$OUT_DIR/$MODEL-plaintext.stderr" || true)
    echo "serve_throughput: plaintext run failed${reason:+: $reason}"
  fi
  stop_serve
fi

ENGINE_JSON=""
if [ -n "$ENGINE_MODEL" ]; then
  run_engine after
  ENGINE_JSON="[$ENGINE_JSON_BEFORE,$ENGINE_JSON_AFTER]"
fi

# ---- summary: best points, the ratios ----
/usr/bin/python3 - "$OUT_DIR" "$MODEL" "$ENGINE_JSON" "$VARIANTS" <<'PY'
import json, os, sys
out, model, engine, variants = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
def load(name):
    path = os.path.join(out, name + ".json")
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else None
def best_closed(run):
    closed = [p for p in run["points"] if p["mode"] == "closed"]
    return max(closed, key=lambda p: p["throughput_per_s"]) if closed else None
main, notls, plain = load(model), load(model + "-notls"), load(model + "-plaintext")
if main is None:
    sys.exit("serve_throughput: no result for the main run")
best = best_closed(main) or max(main["points"], key=lambda p: p["throughput_per_s"])
where = f"c={best['concurrency']}" if best["mode"] == "closed" else f"r={best['rate']:.0f}"
print(f"summary: {model} ({main['precision']}, isa {main['isa']}, batch {main['batch']} per request)")
print(f"  best closed loop: {best['throughput_per_s']:.0f} req/s = {best['images_per_s']:.0f} images/s at {where}, "
      f"p50 {best['latency_ms_p50']:.2f} ms, p99 {best['latency_ms_p99']:.2f} ms")
print(f"  best of all points (achieved): {main['best_throughput_per_s']:.0f} req/s")
opens = [p for p in main["points"] if p["mode"] == "open"]
if opens:
    half = [p for p in opens if p.get("rate_fraction") == 0.5]
    near = half[0] if half else min(opens, key=lambda p: abs(p["rate"] - best["throughput_per_s"] / 2))
    print(f"  open loop at {'50% of the best' if half else 'the rate nearest half the best'}: r={near['rate']:.0f} -> "
          f"{near['throughput_per_s']:.0f} req/s, p50 {near['latency_ms_p50']:.2f} ms, p95 {near['latency_ms_p95']:.2f} ms, "
          f"p99 {near['latency_ms_p99']:.2f} ms, errors {near['errors']}, unsent {near['unsent']}")
def ratio(label, run, missing):
    b = best_closed(run) if run else None
    if b is None:
        print(f"  {label}: unavailable ({missing})")
        return
    m1 = {p["concurrency"]: p for p in main["points"] if p["mode"] == "closed"}.get(1)
    r1 = {p["concurrency"]: p for p in run["points"] if p["mode"] == "closed"}.get(1)
    lat = f"; p50 at c=1 {m1['latency_ms_p50']:.2f} vs {r1['latency_ms_p50']:.2f} ms" if m1 and r1 else ""
    print(f"  {label}: {best['throughput_per_s'] / b['throughput_per_s']:.2f} "
          f"({best['throughput_per_s']:.0f} vs {b['throughput_per_s']:.0f} req/s{lat})")
ratio("TLS cost, best closed-loop throughput HTTPS / plain HTTP", notls,
      "the plain-HTTP run failed; see " + os.path.join(out, model + "-notls.stderr") if variants else "skipped: --no-variants")
ratio("encryption cost, best closed-loop throughput encrypted / plaintext", plain,
      "the service refused plaintext requests or the run failed; see " + os.path.join(out, model + "-plaintext.stderr")
      if variants else "skipped: --no-variants")
if engine:
    runs = [e for e in json.loads(engine) if e]
    if runs:
        e = runs[0]
        rates = [r["throughput_per_s"] for r in runs]
        mean = sum(rates) / len(rates)
        print(f"  engine alone: {' and '.join(f'{r:.1f}' for r in rates)} images/s before and after the service "
              f"(batch {e['batch']}, {e['threads']} threads, {e['precision']}); "
              f"end to end / engine (their mean) = {best['images_per_s'] / mean:.2f}")
    else:
        print("  engine alone: unavailable (ppml bench engine failed)")
PY

# ---- the plot ----
PNG="$OUT_DIR/$MODEL.png"
have_matplotlib() { /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; }
if ! command -v gnuplot >/dev/null && ! have_matplotlib && [ "$PLOT_INSTALL" = 1 ]; then
  echo "serve_throughput: installing gnuplot-nox for the plot" >&2
  source scripts/apt-install.sh
  apt_install gnuplot-nox > "$OUT_DIR/apt.log" 2>&1 ||
    echo "serve_throughput: could not install gnuplot-nox (see $OUT_DIR/apt.log)" >&2
fi
csvs=()
for v in "$MODEL" "$MODEL-notls" "$MODEL-plaintext"; do [ -s "$OUT_DIR/$v.csv" ] && csvs+=("$v"); done
if command -v gnuplot >/dev/null; then
  term=png
  if gnuplot -e 'set terminal pngcairo' 2>/dev/null; then term=pngcairo; fi
  {
    echo "set terminal $term size 1500,500 noenhanced"
    echo "set output '$PNG'; set datafile separator ','; set key top left; set grid"
    echo "set multiplot layout 1,3 title '$MODEL end to end (ppml bench serve)'"
    echo "set logscale x 2; set xlabel 'concurrency (closed loop)'; set ylabel 'req/s'; set yrange [0:*]; set title 'throughput'"
    plot="plot"
    for v in "${csvs[@]}"; do
      plot+=" '$OUT_DIR/$v.csv' every ::1 using (strcol(1) eq 'closed' ? \$2 : 1/0):6 with linespoints title '$v',"
    done
    echo "${plot%,}"
    echo "set ylabel 'ms'; set yrange [*:*]; set logscale y; set title 'latency, closed loop ($MODEL)'"
    echo "plot for [c=8:10] '$OUT_DIR/$MODEL.csv' every ::1 using (strcol(1) eq 'closed' ? \$2 : 1/0):c with linespoints title word('p50 p95 p99', c - 7)"
    echo "unset logscale x; set xlabel 'offered rate, req/s (open loop)'; set title 'latency, open loop ($MODEL)'"
    if grep -q '^open,' "$OUT_DIR/$MODEL.csv" 2>/dev/null; then
      echo "plot for [c=8:10] '$OUT_DIR/$MODEL.csv' every ::1 using (strcol(1) eq 'open' ? \$3 : 1/0):c with linespoints title word('p50 p95 p99', c - 7)"
    else
      # An empty panel: a curve below the range (gnuplot refuses a plot with no defined point).
      echo "set label 1 'no open-loop points' at graph 0.3,0.5; unset logscale y; set xrange [0:1]; set yrange [0:1]; plot -1 notitle"
    fi
    echo "unset multiplot"
  } > "$OUT_DIR/$MODEL.gnuplot"
  gnuplot "$OUT_DIR/$MODEL.gnuplot" && echo "plot: $PNG (gnuplot)"
elif have_matplotlib; then
  /usr/bin/python3 - "$OUT_DIR" "$MODEL" "$PNG" "${csvs[@]}" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out, model, png, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = {r: list(csv.DictReader(open(f"{out}/{r}.csv"))) for r in runs}
fig, ax = plt.subplots(1, 3, figsize=(15, 5))
for r, data in rows.items():
    closed = [d for d in data if d["mode"] == "closed"]
    ax[0].plot([int(d["concurrency"]) for d in closed], [float(d["throughput_per_s"]) for d in closed], "o-", label=r)
ax[0].set_ylim(bottom=0)
ax[0].set(xscale="log", xlabel="concurrency (closed loop)", ylabel="req/s", title="throughput")
main = rows.get(model, [])
for q in ("p50", "p95", "p99"):
    closed = [d for d in main if d["mode"] == "closed"]
    ax[1].plot([int(d["concurrency"]) for d in closed], [float(d[f"latency_ms_{q}"]) for d in closed], "o-", label=q)
    opened = [d for d in main if d["mode"] == "open"]
    ax[2].plot([float(d["rate"]) for d in opened], [float(d[f"latency_ms_{q}"]) for d in opened], "o-", label=q)
ax[1].set(xscale="log", yscale="log", xlabel="concurrency (closed loop)", ylabel="ms", title=f"latency, closed loop ({model})")
ax[2].set(yscale="log", xlabel="offered rate, req/s (open loop)", ylabel="ms", title=f"latency, open loop ({model})")
for a in ax:
    a.grid(True)
    a.legend()
fig.suptitle(f"{model} end to end (ppml bench serve)")
fig.tight_layout()
fig.savefig(png)
print(f"plot: {png} (matplotlib)")
PY
else
  echo "plot: none (neither gnuplot nor python3-matplotlib is installed; the CSVs are in $OUT_DIR)"
fi
echo "csv: $(for v in "${csvs[@]}"; do printf '%s ' "$OUT_DIR/$v.csv"; done)"
