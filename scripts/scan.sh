#!/usr/bin/env bash
# One command per security scan, with the pinned scanners of .venv (./scripts/dev_env.sh) and
# the same command lines and gate as `dagger call scan|sbom|lint` and tests/security.
#
#   scripts/scan.sh fs                  # Trivy misconfig+secret+license on the repo, gated
#   scripts/scan.sh image TAG           # the same on a local image (docker save), gated
#   scripts/scan.sh sbom TAG [OUT]      # CycloneDX SBOM of a local image
#   scripts/scan.sh dockerfiles         # hadolint on every Dockerfile (variants.ALL_DOCKERFILES)
#   scripts/scan.sh workflows           # zizmor --offline on .github (workflows, dependabot)
#
# Options (env): SEVERITY, IGNORE_UNFIXED=1, SCANNERS, SCAN_OUT, TRIVY_CACHE_DIR, VENV (`--help`
# says each). Exit: 0 pass, 1 findings, 2 bad usage or input. The steps live in
# ci/src/onnx_serving/local_scan.py.
set -euo pipefail
cd "$(dirname "$0")/.."
# --help: local_scan's own usage, which needs no .venv (standard library only).
case ${1:-} in -h | --help) PYTHONPATH=ci/src exec python3 -m onnx_serving.local_scan --help ;; esac
py=${VENV:-.venv}/bin/python
[[ -x $py ]] || { echo "scan: $py not found: run ./scripts/dev_env.sh first" >&2; exit 2; }
PYTHONPATH="ci/src${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m onnx_serving.local_scan "$@"
