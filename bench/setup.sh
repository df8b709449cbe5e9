#!/usr/bin/env bash
# Create the peer servers' virtual environments (idempotent):
#   bench/.venv-mlserver  MLServer (+ httptools: uvicorn's fastest parser, as our server uses)
#   bench/.venv-litserve  LitServe
#   bench/.venv-tools     py-spy, to profile any server from outside while wrk loads it
# Peers pin their own fastapi/uvicorn/pydantic, so they never go into the project's .venv.
# Each gets the same onnxruntime version as .venv, so every contender runs the same kernels.
set -euo pipefail
cd "$(dirname "$0")/.."

base_python=${BENCH_BASE_PYTHON:-.venv/bin/python}
[[ -x $base_python ]] || base_python=python3
ort_version=$("$base_python" -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')

make_venv() {  # make_venv NAME PACKAGE...
    local venv=bench/.venv-$1
    shift
    local stamp=$venv/.bench-stamp want="$*"
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    echo "bench/setup.sh: creating $venv with: $*" >&2
    "$base_python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install -q "$@"
    echo "$want" > "$stamp"
}

make_venv mlserver "mlserver==1.7.1" httptools "onnxruntime==$ort_version"
make_venv litserve "litserve==0.2.19" "onnxruntime==$ort_version"
make_venv tools "py-spy==0.4.3"
