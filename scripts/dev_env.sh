#!/usr/bin/env bash
# Create or refresh .venv: the hashed host test environment (requirements/test.lock: runtime +
# every pyproject `dev` entry, so CI runs the same versions every day), then the project itself
# (editable). Skips the install when the lock and pyproject are unchanged since the last run.
set -euo pipefail
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
.venv/bin/python -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
