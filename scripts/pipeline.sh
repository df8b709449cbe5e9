#!/usr/bin/env bash
# The Dagger module's functions on this machine's Docker engine: `dagger call` without Dagger.
#   ./scripts/pipeline.sh FUNCTION [ARGS...]            e.g. build --variant cpu
#   ./scripts/pipeline.sh [MODULE ARGS...] FUNCTION ...  e.g. --version 1.2.3 build
#   ./scripts/pipeline.sh sbom export --path sbom.cdx.json
#   ./scripts/pipeline.sh serve up --ports 8000:8000
# local_engine/ runs the module's own code through the SDK against a local stand-in for the
# engine (docs/PIPELINE.md says what it models and what it refuses). The CA bundle of this
# host is passed as --ca-bundle, as CI passes the runner's.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "${1:---help}"  # no function: the usage too; later arguments are the function's
cd "$(dirname "$0")/.."
./scripts/setup.sh test >&2
flags=()
[[ -r /etc/ssl/certs/ca-certificates.crt ]] && flags=(--ca-bundle file:///etc/ssl/certs/ca-certificates.crt)
# Trivy's vulnerability DB comes from a registry this machine is not allowed to reach; where
# one can be reached, PIPELINE_VULNERABILITY_DB=1 lets the scans download it.
if [[ ${PIPELINE_VULNERABILITY_DB:-0} != 1 ]]; then
    echo "pipeline: scanning without Trivy's vulnerability DB (--offline-scan;" \
         "PIPELINE_VULNERABILITY_DB=1 downloads it)" >&2
    flags+=(--offline-scan)
fi
exec .venv/bin/python -m local_engine "${flags[@]}" "$@"
