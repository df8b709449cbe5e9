"""Command lines shared by the Dagger plan and the Docker image tests.

The Dagger functions put these into `with_exec`; tests/ runs the very same lists for real
against Docker, so what the engine will execute has been executed on this machine too.
Pure Python, no dagger import: tests import it without an engine.
"""

from __future__ import annotations

SMOKE_CLIENT = "scripts/smoke_client.py"


def smoke_command(url: str, model: str = "mlp", python: str = "python") -> list[str]:
    """The tritonclient smoke test against a running server at `url` (host:port)."""
    return [python, SMOKE_CLIENT, "--url", url, "--model", model]


# --- What the checks (`test`, `lint`) and `benchmark` execute. ---

# Tests that need no Docker engine and no GPU: they run inside the dev image in `test`.
UNIT_TEST_MARKERS = "not docker and not gpu"
# The Python code `lint` type-checks (the README's development command).
TYPED_PATHS: tuple[str, ...] = ("service", "ci/src", "tests", "bench", "scripts")
# zizmor audits all of .github: the workflows and dependabot.yml.
GITHUB_DIR = ".github"
# The structural workflow test (pins, one Dagger step per job, permissions).
WORKFLOW_TEST = "tests/pipeline/test_pipeline_workflows.py"
LOADGEN = "ci/src/onnx_serving/loadgen.py"


def unit_test_command(python: str = "python") -> list[str]:
    """pytest without Docker/GPU tests; no cache dir, so a read-only checkout works."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", UNIT_TEST_MARKERS]


def ruff_command(python: str = "python") -> list[str]:
    """Lint every Python file (config: the root pyproject)."""
    return [python, "-m", "ruff", "check", "--no-cache", "."]


def mypy_command(python: str = "python") -> list[str]:
    """Strict type check of all project code (config: the root pyproject)."""
    return [python, "-m", "mypy", "--cache-dir=/dev/null", *TYPED_PATHS]


def workflow_check_command(python: str = "python") -> list[str]:
    """The structural test of .github/workflows (complements zizmor's security audit)."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", WORKFLOW_TEST]


def loadgen_command(
    url: str,
    model: str = "mlp",
    requests: int = 2000,
    concurrency: int = 8,
    batch: int = 1,
    python: str = "python",
) -> list[str]:
    """A bounded load run against a server at `url` (host:port); prints a short report."""
    return [
        python,
        LOADGEN,
        "--url",
        url,
        "--model",
        model,
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        "--batch",
        str(batch),
    ]


def pip_install_command(requirements: list[str], python: str = "python") -> list[str]:
    """Install requirement strings into the interpreter's environment (the check container)."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        *requirements,
    ]


def trivy_db_command(cache_dir: str, trivy: str = "trivy") -> list[str]:
    """Download/refresh Trivy's vulnerability DB into `cache_dir` (needs the network).

    The scans themselves run with trivy.OFFLINE_FLAGS and read the DB from the same cache
    dir, so only this step talks to the DB registry (in CI, never on this offline machine).
    """
    return [trivy, "image", "--download-db-only", "--no-progress", "--cache-dir", cache_dir]


HADOLINT_CONFIG = ".hadolint.yaml"


def hadolint_command(
    dockerfiles: list[str], hadolint: str = "hadolint", config: str = HADOLINT_CONFIG
) -> list[str]:
    """Lint Dockerfiles; exits non-zero on any finding at or above the config's threshold.

    The config (`.hadolint.yaml`) is passed explicitly so the result never depends on the cwd.
    """
    return [hadolint, "--config", config, "--no-color", *dockerfiles]


def zizmor_command(path: str = GITHUB_DIR, zizmor: str = "zizmor") -> list[str]:
    """Audit GitHub workflows and Dependabot offline (no API calls); non-zero on findings."""
    return [zizmor, "--offline", "--no-progress", path]
