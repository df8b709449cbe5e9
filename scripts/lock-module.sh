#!/usr/bin/env bash
# Regenerate ci/uv.lock, the Dagger module's lock, the way the engine's Python runtime does.
# The runtime copies its SDK source into ci/sdk (a path dependency, gitignored; a uv workspace
# with a `dev` group and the member `codegen`), runs `uv lock` there with its own uv (0.10.3 in
# engine 0.21.x), then `uv sync --no-dev` from the lock. Here ci/sdk is the SDK's project files
# of the pinned release, vendored in ci/sdk-layout (all that uv reads of it to lock), and the
# same uv version locks it. Like the runtime's `uv lock`, it starts from the committed lock and
# keeps its pins; arguments go to `uv lock` (`--upgrade` re-resolves every package).
# tests/pipeline/test_pipeline_module_lock.py runs the runtime's `uv lock` offline against the
# result and fails if it would change it.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"
cd "$(dirname "$0")/.."
uv_version=${RUNTIME_UV_VERSION:-0.10.3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/module"
cp ci/pyproject.toml ci/uv.lock "$work/module/"
cp -R ci/sdk-layout "$work/module/sdk"
python3 -m venv "$work/uv"
"$work/uv/bin/pip" install -q --disable-pip-version-check "uv==$uv_version"
(cd "$work/module" && "$work/uv/bin/uv" lock --quiet "$@")
cp "$work/module/uv.lock" ci/uv.lock
echo "lock-module.sh: wrote ci/uv.lock with uv $uv_version ($(grep -c '^name = ' ci/uv.lock) packages)"
