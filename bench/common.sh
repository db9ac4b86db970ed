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
