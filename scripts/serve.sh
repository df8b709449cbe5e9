#!/usr/bin/env bash
# The main job: build the production image with the bundled default model and serve it.
#   ./scripts/serve.sh                 # http://127.0.0.1:8000, container `onnx-serving`
#   PORT=9000 NAME=my-srv IMAGE=my/onnx-serving:dev ./scripts/serve.sh
# Steps: ensure the base image -> BuildKit build of dockerfiles/Dockerfile.optimized (the CA
# bundle, if any, as a build secret: CA_BUNDLE, default the host's) -> run detached on
# 127.0.0.1 -> wait for Docker's `healthy` -> tritonclient smoke test -> how to use/stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-onnx-serving:latest}
name=${NAME:-onnx-serving}
port=${PORT:-8000}
base=${BASE_IMAGE:-python:3.11-slim-bookworm}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# DOCKER overrides the client; by default Debian's /usr/bin/docker (BuildKit), else PATH's.
docker_bin=${DOCKER:-$( [[ -x /usr/bin/docker ]] && echo /usr/bin/docker || command -v docker )} ||
    { echo "serve: no docker client found" >&2; exit 1; }
export DOCKER="$docker_bin" DOCKER_BUILDKIT=1

[[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) ||
    { echo "serve: PORT must be a TCP port number, got '$port'" >&2; exit 1; }
"$docker_bin" info >/dev/null 2>&1 ||
    { echo "serve: no Docker engine answers (start dockerd, or ./scripts/services.sh as root)" >&2; exit 1; }

# Replace our own previous run; refuse to take a port something else holds.
"$docker_bin" rm --force "$name" >/dev/null 2>&1 || true
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "serve: 127.0.0.1:$port is already in use; choose another with PORT=..." >&2; exit 1
fi

./scripts/ensure_base_image.sh "$base"

secret=()
if [[ -s $ca_bundle ]]; then secret=(--secret "id=ca_bundle,src=$ca_bundle"); fi
echo "serve: building $image (dockerfiles/Dockerfile.optimized)"
"$docker_bin" build --progress=plain --file dockerfiles/Dockerfile.optimized --tag "$image" \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" \
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || true)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "${secret[@]}" . > /tmp/onnx-serving-build.log 2>&1 ||
    { tail -30 /tmp/onnx-serving-build.log >&2; echo "serve: build failed (full log: /tmp/onnx-serving-build.log)" >&2; exit 1; }

echo "serve: starting $name on 127.0.0.1:$port"
# --stop-timeout 30: `docker stop` waits the 30 s graceful shutdown the server allows
# in-flight requests (service/server.py) before SIGKILL, not Docker's default 10 s.
"$docker_bin" run --detach --name "$name" --read-only --cap-drop ALL \
    --security-opt no-new-privileges --stop-timeout 30 \
    --publish "127.0.0.1:$port:8000" "$image" >/dev/null

status=starting
for _ in $(seq 240); do  # up to 120 s
    status=$("$docker_bin" inspect --format '{{.State.Status}}/{{.State.Health.Status}}' "$name")
    [[ $status == running/healthy || $status != running/* || $status == */unhealthy ]] && break
    sleep 0.5
done
if [[ $status != running/healthy ]]; then
    "$docker_bin" logs --tail 30 "$name" >&2
    echo "serve: container $name is not healthy ($status)" >&2; exit 1
fi

python=.venv/bin/python
if [[ -x $python ]] && "$python" -c 'import tritonclient.http' 2>/dev/null; then
    "$python" scripts/smoke_client.py --url "127.0.0.1:$port" --model mlp
else
    echo "serve: smoke test skipped: no tritonclient (run ./scripts/dev_env.sh for .venv)"
fi

cat <<EOT

onnx-serving is up: http://127.0.0.1:$port  (image $image, container $name, healthy)
  curl -s http://127.0.0.1:$port/v2/models/mlp
  python3 -c 'import json; print(json.dumps({"inputs": [{"name": "input", "shape": [1, 256],
      "datatype": "FP32", "data": [0.1] * 256}]}))' |
    curl -s -X POST --data-binary @- http://127.0.0.1:$port/v2/models/mlp/infer
  .venv/bin/python scripts/smoke_client.py --url 127.0.0.1:$port --model mlp
Logs: docker logs -f $name        Stop: docker stop $name && docker rm $name
EOT
