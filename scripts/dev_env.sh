#!/usr/bin/env bash
# Create or refresh .venv with the project (editable) and its dev/tool dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
stamp=.venv/.dev-env-stamp
want=$(cat pyproject.toml requirements/dev-tools.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
if [[ -f requirements/dev-tools.txt ]]; then
    .venv/bin/python -m pip install -q -r requirements/dev-tools.txt
fi
echo "$want" > "$stamp"
