#!/usr/bin/env bash
# The one command that sets up what the tests need and runs all of them.
#   ./scripts/test.sh            # everything (image tests skip if no Docker engine)
#   ./scripts/test.sh -m 'not docker'   # extra args go to pytest
# With REQUIRE_DOCKER=1 (set by .ci/run) a missing engine fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/dev_env.sh          # .venv with the dev and tool dependencies
./scripts/services.sh         # dockerd + local registry, when this machine has them

exec .venv/bin/python -m pytest "$@"
