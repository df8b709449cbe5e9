#!/usr/bin/env bash
# Build image variants with Docker, exactly as `dagger call build` does (same Dockerfile
# targets, build args and CA secret): each as onnx-serving:<variant>.
#   ./scripts/build.sh                 # every variant of ci/src/onnx_serving/variants.py
#   ./scripts/build.sh cpu gpu         # some of them
#   ./scripts/build.sh --models DIR cpu   # a model repository (or a folder holding one .onnx)
#   ./scripts/build.sh --models model.onnx --model-name iris --model-version 2 cpu
#   ./scripts/build.sh --model-url URL --model-sha256 HEX --model-name iris cpu  # fetched by the build
# CA_BUNDLE (default: the host's bundle) reaches pip as a BuildKit secret; BASE_IMAGE overrides
# the Dockerfile's base. The steps live in ci/src/onnx_serving/local.py.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
HELP_MODULE="onnx_serving.local build" help_first "$@"
cd "$(dirname "$0")/.."
PYTHONPATH=ci/src exec python3 -m onnx_serving.local build "$@"
