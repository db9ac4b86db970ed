#!/usr/bin/env bash
# One command to a running ppml-serving on a fresh Debian machine: installs
# what is missing, builds, starts the whole service (`ppml serve` with
# configs/quickstart.yaml: its own TLS redis-server, the HTTPS front-end, two
# enclave workers serving the Fashion-MNIST model), shows it working with an
# attested, encrypted request from the C++ client and 100 from the Python
# client, and keeps serving until Ctrl-C.
#
#   ./run.sh           the above
#   ./run.sh --demo    1,000 Fashion-MNIST test images through the encrypted
#                      HTTPS path, prints `demo: N/N answered, accuracy X, p50 Y ms`,
#                      stops the service and exits 0 when all were answered
set -euo pipefail
cd "$(dirname "$0")"
mode=serve
case "${1:-}" in
  "") ;;
  --demo) mode=demo ;;
  *) echo "run.sh: unknown argument $1 (use --demo, or nothing)" >&2; exit 2 ;;
esac
scripts/install-deps.sh
scripts/build.sh

ready_file=$(mktemp)
build/bin/ppml serve --config configs/quickstart.yaml > "$ready_file" &
serve_pid=$!
stop() { kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; rm -f "$ready_file"; }
trap stop EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 300); do
  grep -q '^ready:' "$ready_file" && break
  kill -0 "$serve_pid" 2>/dev/null || { echo "run.sh: ppml serve stopped; see build/serve/logs" >&2; exit 1; }
  sleep 1
done
ready=$(grep '^ready:' "$ready_file") || { echo "run.sh: the service was not ready in 5 minutes" >&2; exit 1; }
echo "$ready"
# The fields of the ready line, for the clients (ppml infer reads PPML_* too).
field() { echo "$ready" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
export PPML_URL=$(field url) PPML_CA=$(field ca) PPML_PLATFORM_PUBKEY=$(field platform_pubkey) PPML_MEASUREMENT=$(field measurement)
demo=(/usr/bin/python3 clients/python/demo.py --url "$PPML_URL" --ca "$PPML_CA"
      --platform-pubkey "$PPML_PLATFORM_PUBKEY" --measurement "$PPML_MEASUREMENT")

if [ "$mode" = demo ]; then
  "${demo[@]}" --images 1000
  exit $?
fi

echo
echo "run.sh: the enclave's attestation, verified against the platform key and the measurement:"
build/bin/ppml attest --model fashion
echo
echo "run.sh: one encrypted request from the C++ client:"
/usr/bin/python3 - <<'PY'
import gzip, numpy as np
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    image = np.frombuffer(f.read(), np.uint8, offset=16)[:784].reshape(1, 1, 28, 28)
np.save("build/serve/first-test-image.npy", image.astype(np.float32) / 255.0)
PY
build/bin/ppml infer --model fashion --input build/serve/first-test-image.npy
echo
echo "run.sh: 100 encrypted requests from the Python client:"
"${demo[@]}" --images 100
echo
echo "run.sh: serving at $PPML_URL (CA $PPML_CA); Ctrl-C stops everything"
wait "$serve_pid"
