#!/usr/bin/env bash
# docker/check-images.sh [--outsource] [--local-bases] [--keep]
#
# Builds the images of docker/Dockerfile and runs the compose stack from them
# on a machine without a Docker engine, with Debian's buildah (chroot
# isolation, as root): setup.sh, redis, the front-end and two workers (and the
# accelerator with --outsource, i.e. compose.outsource.yaml on top), each in a
# container of its image with compose's command, sharing the host's network
# (the compose service names resolve to 127.0.0.1). Then `ppml attest` and
# `ppml infer` from a container of the runtime image must verify the quote and
# classify an image; with --outsource the accelerator's /metrics must count
# the layers it computed. Prints `check-images: ok ...` and exits 0, or names
# what failed and exits 1. With a Docker engine, `docker compose up --build`
# (docker/README.md) is the real thing; this is how the images are checked
# where there is none (this project's build machines).
#
#   --outsource    compose.yaml + compose.outsource.yaml
#   --local-bases  make debian:bookworm and debian:bookworm-slim with
#                  mmdebstrap from Debian's mirror when they are not there
#                  (machines that reach Debian but no container registry)
#   --keep         leave the containers' logs and the volume in $WORK
#
# Uses host ports 6379, 8443, 9100, 9101 (and 7070, 9102): they must be free.
# The first build takes about 10 minutes on 2 cores; later ones reuse layers.
set -euo pipefail
cd "$(dirname "$0")/.."

outsource=0 local_bases=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --outsource) outsource=1 ;;
    --local-bases) local_bases=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "check-images: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "check-images: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (buildah's chroot isolation)"

need=()
command -v buildah >/dev/null || need+=(buildah)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
if [ "$local_bases" = 1 ]; then command -v mmdebstrap >/dev/null || need+=(mmdebstrap); fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

for port in 6379 8443 9100 9101 7070 9102; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is in use"; fi
done

if [ "$local_bases" = 1 ]; then
  for tag in bookworm bookworm-slim; do
    image="docker.io/library/debian:$tag"
    buildah inspect --type image "$image" >/dev/null 2>&1 && continue
    say "making $image with mmdebstrap"
    base=$(buildah from scratch)
    root=$(buildah mount "$base")
    mmdebstrap --variant=minbase --include=ca-certificates bookworm "$root" http://deb.debian.org/debian >/dev/null 2>&1 \
      || fail "mmdebstrap could not make $image"
    buildah umount "$base" >/dev/null
    buildah commit --quiet "$base" "$image" >/dev/null
    buildah rm "$base" >/dev/null
  done
fi

WORK=$(mktemp -d /tmp/ppml-check-images.XXXXXX)
containers=()
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  if [ "$keep" = 1 ]; then say "logs and volume kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The build context: the tree as git sees it, without build/ and .git
# (docker/Dockerfile.dockerignore, which this buildah does not read).
mkdir "$WORK/context"
git ls-files -co --exclude-standard | grep -v '^build/' | tar -cf - -T - | tar -xf - -C "$WORK/context"
for target in redis runtime; do
  tag=$([ "$target" = redis ] && echo ppml-serving-redis:dev || echo ppml-serving:dev)
  say "building $tag (docker/Dockerfile --target $target; log: $WORK/build-$target.log)"
  buildah bud --isolation chroot --layers -f docker/Dockerfile --target "$target" -t "$tag" "$WORK/context" \
    >"$WORK/build-$target.log" 2>&1 || { tail -30 "$WORK/build-$target.log" >&2; fail "building $tag"; }
done

# Each service of compose (with the overlay): its image, command and environment, one per line as JSON.
files=(docker/compose.yaml)
[ "$outsource" = 1 ] && files+=(docker/compose.outsource.yaml)
/usr/bin/python3 - "${files[@]}" >"$WORK/services.jsonl" <<'EOF'
import json, sys, yaml
def merge(base, over):
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base.get(key), value)
    return out
compose = {}
for path in sys.argv[1:]:
    compose = merge(compose, yaml.safe_load(open(path)))
for name, service in compose["services"].items():
    print(json.dumps({"name": name, "image": service["image"], "command": service["command"],
                      "environment": service.get("environment", {}),
                      "replicas": service.get("deploy", {}).get("replicas", 1),
                      "read_only": any(v.endswith(":ro") for v in service.get("volumes", [])),
                      "volume": bool(service.get("volumes"))}))
EOF
field() { /usr/bin/python3 -c "import json,sys; s=json.loads(sys.argv[1]); print(s['$2'] if isinstance(s['$2'], (str, int)) else json.dumps(s['$2']))" "$1"; }

volume="$WORK/volume"
mkdir -m 0700 "$volume"
chown 10001:10001 "$volume"  # the images' user ppml
# start NAME IMAGE VOLUME_MODE [buildah run options...] -- COMMAND...: a container in the background.
start() {
  local name=$1 image=$2 mode=$3; shift 3
  local options=()
  while [ "$1" != -- ]; do options+=("$1"); shift; done
  shift
  local c
  c=$(buildah from --name "ppml-check-$name-$$" --add-host redis:127.0.0.1 --add-host frontend:127.0.0.1 \
      --add-host accelerator:127.0.0.1 "localhost/$image")
  containers+=("$c")
  case "$mode" in
    ro) options+=(-v "$volume:/var/lib/ppml:ro") ;;
    rw) options+=(-v "$volume:/var/lib/ppml") ;;
  esac
  buildah run --isolation chroot --user 10001:10001 "${options[@]}" "$c" -- "$@" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
}
# The argv of a service's command as separate words (no shell in compose either).
command_of() { /usr/bin/python3 -c "import json,sys; print('\0'.join(json.loads(sys.argv[1])['command']), end='')" "$1"; }
env_of() { /usr/bin/python3 -c "import json,sys; [print('-e', k + '=' + str(v)) for k, v in json.loads(sys.argv[1])['environment'].items()]" "$1"; }

run_service() {  # run_service JSON NAME [extra buildah run options]
  local json=$1 name=$2; shift 2
  local mode=none
  [ "$(field "$json" volume)" = True ] && mode=$([ "$(field "$json" read_only)" = True ] && echo ro || echo rw)
  local argv=()
  while IFS= read -r -d '' word; do argv+=("$word"); done < <(command_of "$json"; printf '\0')
  local env=()
  read -r -a env <<<"$(env_of "$json" | tr '\n' ' ')"
  start "$name" "$(field "$json" image)" "$mode" "${env[@]}" "$@" -- "${argv[@]}"
}

service() { grep "\"name\": \"$1\"" "$WORK/services.jsonl"; }
# setup first, to its end.
run_service "$(service setup)" setup
wait "${pids[-1]}" || { cat "$WORK/setup.log" >&2; fail "setup.sh"; }
say "$(tail -1 "$WORK/setup.log")"
run_service "$(service redis)" redis
[ "$outsource" = 1 ] && run_service "$(service accelerator)" accelerator
sleep 2
run_service "$(service frontend)" frontend
worker=$(service worker)
replicas=$(field "$worker" replicas)
config=$(command_of "$worker" | tr '\0' '\n' | sed -n '/^--config$/{n;p}')
for i in $(seq 1 "$replicas"); do
  # On one network the replicas' metrics ports would clash: 9100, 9101, ...
  buildah run --isolation chroot "${containers[0]}" -- cat "$config" 2>/dev/null \
    | sed "s/^    port: 9100/    port: $((9099 + i))/" >"$WORK/worker-$i.yaml" \
    || fail "reading $config from the image"
  chmod 0644 "$WORK/worker-$i.yaml"
  run_service "$worker" "worker-$i" -v "$WORK/worker-$i.yaml:$config:ro"
done

# The client, from the runtime image: attest until a worker is ready, then infer.
awk 'BEGIN { printf "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"FP32\",\"data\":[";
             for (i = 0; i < 784; i++) printf "%s%.3f", (i ? "," : ""), (i % 28) / 28.0; print "]}]}" }' \
  >"$WORK/request.json"
chmod 0644 "$WORK/request.json"
connect=(--url https://frontend:8443 --ca /var/lib/ppml/certs/ca.crt
         --platform-pubkey /var/lib/ppml/platform/platform.pub.pem --model fashion)
client=$(buildah from --name "ppml-check-client-$$" --add-host frontend:127.0.0.1 localhost/ppml-serving:dev)
containers+=("$client")
client_run() { buildah run --isolation chroot --user 10001:10001 -v "$volume:/var/lib/ppml:ro" \
                 -v "$WORK/request.json:/tmp/request.json:ro" "$client" -- "$@"; }
attested=0
for _ in $(seq 1 60); do
  if client_run ppml attest "${connect[@]}" >"$WORK/attest.log" 2>&1; then attested=1; break; fi
  sleep 1
done
[ "$attested" = 1 ] || { tail -5 "$WORK"/*.log >&2; fail "ppml attest against the front-end's container"; }
measurement=$(sed -n 's/^measurement: \([0-9a-f]\{64\}\).*/\1/p' "$WORK/attest.log")
client_run ppml infer "${connect[@]}" --measurement "$measurement" --input /tmp/request.json --json \
  >"$WORK/infer.log" 2>&1 || { cat "$WORK/infer.log" >&2; fail "ppml infer"; }
answer=$(grep '^{' "$WORK/infer.log" | tail -1)
case "$answer" in *'"argmax":['*) ;; *) fail "ppml infer gave no class: $answer" ;; esac

detail=""
if [ "$outsource" = 1 ]; then
  exec 3<>/dev/tcp/127.0.0.1/9102
  printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  computed=$(sed -n 's/^ppml_accel_requests_total{type="compute"} \([0-9.e+]*\).*/\1/p' <&3)
  exec 3<&-
  [ -n "$computed" ] && [ "${computed%%.*}" != 0 ] || fail "the accelerator computed no layer (compute=$computed)"
  detail=" accelerator_compute_requests=$computed"
fi
say "ok images=ppml-serving:dev,ppml-serving-redis:dev services=$(wc -l <"$WORK/services.jsonl") workers=$replicas measurement=$measurement answer=$answer$detail"
