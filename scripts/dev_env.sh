#!/usr/bin/env bash
# Create or refresh .venv: the hashed host test environment (requirements/test.lock: runtime +
# every pyproject `dev` entry, so CI runs the same versions every day), then the project itself
# (editable). Skips the install when the lock and pyproject are unchanged since the last run.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
stamp=.venv/.dev-env-stamp
want=$(cat pyproject.toml requirements/test.lock | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    exit 0
fi
echo "dev_env: installing requirements/test.lock and the project into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --require-hashes -r requirements/test.lock
# The editable install of service/ and ci/src/onnx_serving warns about lenient editable mode
# on every run; its output is shown only when it fails.
.venv/bin/python -m pip install -q --no-deps -e . >.venv/editable.log 2>&1 || {
    cat .venv/editable.log >&2; exit 1; }
echo "$want" > "$stamp"
