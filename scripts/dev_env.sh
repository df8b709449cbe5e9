#!/usr/bin/env bash
# Create or refresh .venv with the project (editable) and its dev/tool dependencies.
# Skips the install when pyproject.toml is unchanged since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
stamp=.venv/.dev-env-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    exit 0
fi
echo "dev_env: installing the project and its dev dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "$want" > "$stamp"
