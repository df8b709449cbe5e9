#!/usr/bin/env bash
# Push a local image with plain docker under the same tags `dagger call publish` gives it
# (ci/src/onnx_serving/tags.py: v1.2.3 -> 1.2.3, 1.2, 1, latest unless a higher release is
# tagged; edge -> edge, sha-<7 hex>; the variant's suffix on each). Prints ref@sha256 lines.
#   ./scripts/push.sh onnx-serving:gpu ghcr.io/my-org/onnx-serving v1.2.3
#   ./scripts/push.sh onnx-serving:cpu 127.0.0.1:5000/onnx-serving edge
# Log in first (docker login REGISTRY); docs/REGISTRY_GUIDE.md has each registry's way.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
HELP_MODULE="onnx_serving.local push" help_first "$@"
cd "$(dirname "$0")/.."
PYTHONPATH=ci/src exec python3 -m onnx_serving.local push "$@"
