#!/usr/bin/env bash
# All the tests: set up what they need (scripts/setup.sh test), then pytest.
#   ./scripts/test.sh                   # everything
#   ./scripts/test.sh -m 'not docker'   # extra args go to pytest
# The summary at the end counts the skipped tests and says why. With REQUIRE_DOCKER=1 (what CI
# runs) a missing Docker engine fails the run instead of skipping the image tests.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "${1:-}"  # only the first: the others are pytest's
cd "$(dirname "$0")/.."
./scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
