#!/usr/bin/env bash
# Test a built image as users run it: hardened (read-only, no capabilities) on a free
# 127.0.0.1 port, wait for Docker's `healthy`, smoke-test every served model from its own
# metadata, then SIGTERM: it must exit 0. Non-zero with a one-line reason otherwise.
#   ./scripts/test-image.sh onnx-serving:cpu
# The steps live in ci/src/onnx_serving/local.py (the smoke client needs .venv: setup.sh).
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
HELP_MODULE="onnx_serving.local test-image" help_first "$@"
cd "$(dirname "$0")/.."
PYTHONPATH=ci/src exec python3 -m onnx_serving.local test-image "$@"
