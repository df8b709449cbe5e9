#!/usr/bin/env bash
# The mutation score of service/ and ci/src/onnx_serving/ (mutmut; slow, so not part of
# ./scripts/test.sh): each mutant runs against the non-Docker tests that reach its code.
#   ./scripts/mutation.sh              # a seeded sample of 250 mutants per package, scored
#   ./scripts/mutation.sh --sample 0   # every mutant (many hours on two cores)
#   ./scripts/mutation.sh --resume     # finish an interrupted run (keeps mutants/)
#   ./scripts/mutation.sh score        # the last run's score and the mutants not killed
#   ./scripts/mutation.sh show NAME    # other mutmut commands: show, results, browse
# Configuration: [tool.mutmut] in pyproject.toml. Results explained: docs/MUTATION.md.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "mutation: .venv not found: run ./scripts/setup.sh test" >&2; exit 2; }
export PATH="$PWD/.venv/bin:$PATH"  # mypy, for mutmut's type-check filter
exec .venv/bin/python scripts/mutation.py "$@"
