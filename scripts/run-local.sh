#!/usr/bin/env bash
# The main job: build the production cpu image with the bundled default model and serve it.
#   ./scripts/run-local.sh             # http://127.0.0.1:8000, container `onnx-serving`
#   PORT=9000 NAME=my-srv ./scripts/run-local.sh
#   ./scripts/run-local.sh --models model.onnx --model-name iris   # your model (docs/MODELS.md)
# Set-up (scripts/setup.sh serve: Docker engine, .venv, base image) -> BuildKit build of the cpu
# target (the CA bundle, if any, as a build secret: CA_BUNDLE, default the host's) -> run
# hardened on 127.0.0.1 -> wait for Docker's `healthy` -> tritonclient smoke test. The steps
# live in ci/src/onnx_serving/local.py.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
HELP_MODULE="onnx_serving.local serve" help_first "$@"  # before the set-up
cd "$(dirname "$0")/.."
./scripts/setup.sh serve
PYTHONPATH=ci/src exec python3 -m onnx_serving.local serve "$@"
