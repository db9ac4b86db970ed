# Shared by the bench/*.sh scripts (sourced): argument parsing and JSON
# field extraction. Sets MODELS, BATCH, THREADS, SECONDS_PER_RUN.
MODELS="resnet50 vgg16 mobilenet_v2"
BATCH=16
THREADS=2
SECONDS_PER_RUN=10

parse_bench_args() {
  local script=$1
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --models) MODELS="$2"; shift 2 ;;
      --batch) BATCH="$2"; shift 2 ;;
      --threads) THREADS="$2"; shift 2 ;;
      --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
      *) echo "$script: unknown argument $1 (use --models, --batch, --threads, --seconds)" >&2; exit 2 ;;
    esac
  done
}

# field JSON KEY: one value of a one-line JSON object.
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# int8_model NAME: prints build/models/NAME.int8.onnx, quantized from
# NAME.onnx (random calibration, entropy) when missing or older than it.
int8_model() {
  local fp32="build/models/$1.onnx" int8="build/models/$1.int8.onnx"
  if [ ! -f "$int8" ] || [ "$int8" -ot "$fp32" ]; then
    "${BUILD_DIR:-build}/bin/ppml" model quantize --model "$fp32" --calib random:32 --method entropy --out "$int8" \
      --threads "$THREADS" >&2
  fi
  echo "$int8"
}
