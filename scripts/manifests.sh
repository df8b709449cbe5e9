#!/usr/bin/env bash
# Kubernetes and KServe manifests for a published image digest, as `dagger call manifests`:
#   ./scripts/manifests.sh --image ghcr.io/my-org/onnx-serving@sha256:<64 hex> [--variant gpu] \
#       [--storage-uri s3://bucket/repo] --out deploy-out     # writes deploy-out/<variant>/…
#   ./scripts/manifests.sh --sources deploy                   # regenerates the kustomize tree
# Rendered by ci/src/onnx_serving/manifests.py, the resources defined in its deploy/ package
# (docs/DEPLOY.md). Needs PyYAML: the repo's .venv when there is one (./scripts/dev_env.sh),
# else python3's own.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
HELP_MODULE="onnx_serving.manifests" help_first "$@"
repo=$(cd "$(dirname "$0")/.." && pwd)
py=python3; [[ -x $repo/.venv/bin/python ]] && py=$repo/.venv/bin/python
PYTHONPATH="$repo/ci/src${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m onnx_serving.manifests "$@"
