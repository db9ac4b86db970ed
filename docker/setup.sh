#!/bin/sh
# docker/setup.sh: the one-shot `setup` service of docker/compose.yaml.
#
# Makes in the shared volume what `ppml serve` makes in its state_dir
# (tools/cmd_serve.cc), so that the redis, frontend and worker containers find
# it there; whatever already exists is kept, so a second `docker compose up`
# reuses the keys, the sealed model and the certificates:
#
#   platform/            the simulated platform: quoting key, its public key
#                        (clients pin it), sealing secret   (ppml keygen platform)
#   enclave/             the enclave's sealed service key and its attestation
#                        document                           (ppml enclave provision)
#   fashion.ppmlpkg      the model sealed to that enclave   (ppml model seal);
#                        made again when the ONNX file in the image is newer
#   certs/ca.crt         one dev CA (openssl; ppml has no certificate command):
#   certs/redis.crt      redis-server's TLS certificate (DNS:redis)
#   certs/client.crt     the client certificate of the front-end and the workers
#                        (redis runs with tls-auth-clients yes)
#   certs/frontend.crt   the front-end's HTTPS certificate (localhost,
#                        127.0.0.1, ::1, frontend)
#   redis/password       the password of the Redis user `ppml` (the services'
#                        redis.password_file)
#   redis/redis.conf     that user for redis-server, the default user locked
#                        with a random password of its own (as `ppml serve`
#                        does); TLS settings are on redis-server's command line
#                        in compose.yaml
#
# Environment (the defaults are the image's paths):
#   PPML_STATE       the volume               (/var/lib/ppml)
#   PPML_MODEL_ONNX  the model owner's model  (/opt/ppml/models/fashion_cnn.onnx)
#   PPML_MODEL_NAME  its name on the service  (fashion)
#   PPML_OUTSOURCE   the workers' enclave.outsource.mode (off); measured, so
#                    a change provisions and seals again (compose.outsource.yaml)
# `ppml` and `openssl` are taken from PATH.
set -eu

state=${PPML_STATE:-/var/lib/ppml}
model_onnx=${PPML_MODEL_ONNX:-/opt/ppml/models/fashion_cnn.onnx}
model_name=${PPML_MODEL_NAME:-fashion}
package="$state/$model_name.ppmlpkg"
outsource=${PPML_OUTSOURCE:-off}
case "$outsource" in
  off|integrity|private) ;;
  *) echo "setup: PPML_OUTSOURCE must be off, integrity or private, not '$outsource'" >&2; exit 2 ;;
esac

umask 077  # keys, secrets and the password: readable by the services' user only
mkdir -p "$state/certs" "$state/redis"
say() { echo "setup: $*" >&2; }

# --- the trust flow (README "The trust flow, by hand") ---------------------
if [ ! -f "$state/platform/platform.key.pem" ]; then
  say "making the simulated platform keys"
  ppml keygen platform --out-dir "$state/platform"
fi
if [ ! -f "$state/enclave/sealed_keys.bin" ] || [ ! -f "$package" ] || [ -n "$(find "$model_onnx" -newer "$package")" ] \
   || [ "$(cat "$state/enclave/outsource" 2>/dev/null)" != "$outsource" ]; then
  # The model owner seals only to a fresh attestation: provision, then seal.
  say "provisioning the enclave (sealed service key, attestation; outsource=$outsource)"
  ppml enclave provision --platform "$state/platform" --out-dir "$state/enclave" --outsource "$outsource"
  echo "$outsource" > "$state/enclave/outsource"
  measurement=$(sed -n 's/.*"measurement" *: *"\([0-9a-f]\{64\}\)".*/\1/p' "$state/enclave/attestation.json")
  if [ -z "$measurement" ]; then
    say "no measurement in $state/enclave/attestation.json"
    exit 1
  fi
  say "sealing $model_onnx for the attested enclave (base measurement $measurement)"
  ppml model seal --model "$model_onnx" --quote "$state/enclave/attestation.json" \
    --platform-pubkey "$state/platform/platform.pub.pem" --measurement "$measurement" \
    --model-name "$model_name" --out "$package"
fi

# --- dev certificates: ECDSA P-256, SHA-256, the profile of common/x509.h ---
certs="$state/certs"
cat > "$certs/openssl.cnf" <<'EOF'
# written by docker/setup.sh: the extensions of each certificate it makes
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ppml docker dev CA
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[redis]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:redis
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[frontend]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1,DNS:frontend
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
# issue SECTION COMMON_NAME: certs/SECTION.key and certs/SECTION.crt, signed by the CA
issue() {
  say "making certs/$1.crt ($2)"
  new_key "$certs/$1.key"
  openssl req -x509 -config "$certs/openssl.cnf" -extensions "$1" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
    -key "$certs/$1.key" -subj "/CN=$2" -days 365 -sha256 -out "$certs/$1.crt"
}
if [ ! -f "$certs/ca.crt" ] || [ ! -f "$certs/ca.key" ]; then
  say "making the dev CA (certs/ca.crt)"
  new_key "$certs/ca.key"
  openssl req -x509 -config "$certs/openssl.cnf" -extensions ca -key "$certs/ca.key" -days 365 -sha256 \
    -out "$certs/ca.crt"
  rm -f "$certs/redis.crt" "$certs/client.crt" "$certs/frontend.crt"  # issued by an older CA
fi
[ -f "$certs/redis.crt" ] || issue redis "ppml redis"
[ -f "$certs/client.crt" ] || issue client "ppml redis client"
[ -f "$certs/frontend.crt" ] || issue frontend "ppml front-end"

# --- Redis: the user ppml, its password for the clients -------------------
if [ ! -f "$state/redis/password" ] || [ ! -f "$state/redis/redis.conf" ]; then
  say "making the Redis password (redis/password) and redis/redis.conf"
  password=$(openssl rand -hex 24)
  default_password=$(openssl rand -hex 24)
  printf '%s\n' "$password" > "$state/redis/password"
  {
    echo "# written by docker/setup.sh; redis-server reads it, the clients read redis/password"
    echo "requirepass $default_password"
    echo "user ppml on >$password ~* &* +@all"
  } > "$state/redis/redis.conf"
fi

say "ready: platform_pubkey=$state/platform/platform.pub.pem ca=$certs/ca.crt package=$package"
