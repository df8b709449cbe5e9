#!/usr/bin/env bash
# Regenerate ci/uv.lock, the Dagger module's lock, the way the engine's Python runtime does.
# The runtime copies its SDK into ci/sdk (a path dependency, gitignored) and runs `uv lock`
# there with its own uv (0.10.3 in engine 0.21.x), then `uv sync --no-dev` from the lock. Here
# ci/sdk is stood in for by the SDK's pyproject.toml (name dagger-io, version 0.0.0, the
# dependencies of the dagger-io release dagger.json pins, read from that release's metadata),
# and the same uv version locks it (ci/src/onnx_serving/sdk_stand_in.py). tests/pipeline checks
# the result against the pinned release and ci/pyproject.toml with `uv lock --check`.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"
cd "$(dirname "$0")/.."
uv_version=${RUNTIME_UV_VERSION:-0.10.3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/module/sdk"
cp ci/pyproject.toml "$work/module/pyproject.toml"
PYTHONPATH=ci/src .venv/bin/python -m onnx_serving.sdk_stand_in "$work/module/sdk/pyproject.toml"
python3 -m venv "$work/uv"
"$work/uv/bin/pip" install -q --disable-pip-version-check "uv==$uv_version"
(cd "$work/module" && "$work/uv/bin/uv" lock --quiet)
cp "$work/module/uv.lock" ci/uv.lock
echo "lock-module.sh: wrote ci/uv.lock with uv $uv_version ($(grep -c '^name = ' ci/uv.lock) packages)"
