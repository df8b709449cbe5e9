"""Command lines shared by the Dagger plan, scripts/ and the tests.

The Dagger functions put these into `with_exec`; tests/ and scripts/ run the very same lists
for real against Docker, so what the engine will execute has been executed on this machine
too. Pure Python, no dagger import: tests import it without an engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def smoke_command(
    url: str, models: Sequence[str] = (), python: str = "python", models_label: str = ""
) -> list[str]:
    """The tritonclient smoke test against a server at `url` (host:port): every served model
    (or `models`), requests built from each model's metadata; `models_label` (the image's
    models label) is what the server must say it serves."""
    command = [python, "-m", "onnx_serving.smoke", "--url", url]
    for model in models:
        command += ["--model", model]
    # One argument with "=": a label may start with "-" (a model named "-x").
    return [*command, f"--models-label={models_label}"] if models_label else command


# --- What the checks (`test`, `lint`) and `benchmark` execute. ---

# The README's test command, as .ci/run runs it: the `test` check runs exactly this, as root,
# with a Docker engine of its own (tests/pipeline checks it equals .ci/run).
TEST_SUITE_ENV = {"REQUIRE_DOCKER": "1"}
TEST_SUITE_COMMAND: tuple[str, ...] = ("./scripts/test.sh",)
# The Python code `lint` type-checks (the README's development command).
TYPED_PATHS: tuple[str, ...] = (
    "service",
    "ci/src",
    "local_engine",
    "tests",
    "bench",
    "scripts",
    "examples",
)
# zizmor audits all of .github: the workflows and dependabot.yml.
GITHUB_DIR = ".github"
# The structural workflow test (pins, steps, permissions).
WORKFLOW_TEST = "tests/pipeline/test_pipeline_workflows.py"
# The hashed host test environment: the check container installs exactly this.
TEST_LOCK = "requirements/test.lock"


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
    model: str = "",
    requests: int = 2000,
    concurrency: int = 8,
    batch: int = 1,
    python: str = "python",
) -> list[str]:
    """A bounded load run against a server at `url` (host:port) on `model` (default: the
    first one the server lists); prints a short report."""
    return [
        python,
        "-m",
        "onnx_serving.loadgen",
        "--url",
        url,
        *(["--model", model] if model else []),
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        "--batch",
        str(batch),
    ]


def pip_install_lock_command(lock: str = TEST_LOCK, python: str = "python") -> list[str]:
    """Install a hashed lock into the interpreter's environment: every byte pinned."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "-r",
        lock,
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


# --- Signing (publish in GitHub Actions): cosign, keyless with the job's OIDC token. ---

# cosign v2.6.1 by digest (distroless: its binary is copied into the check container, which
# has the shell the registry login needs).
COSIGN_IMAGE = (
    "ghcr.io/sigstore/cosign/cosign:v2.6.1"
    "@sha256:68839b7f13dac5a6744a5d8818e984dd39183374e37855c19e14d623d9bc9037"
)
COSIGN_BINARY = "/ko-app/cosign"
# The token arrives as a secret variable, never as an argument; `cosign login` writes the
# docker config that `sign` and `attest` push their signatures with.
COSIGN_LOGIN_SCRIPT = (
    'printf %s "$REGISTRY_PASSWORD" | '
    'cosign login "$REGISTRY" --username "$REGISTRY_USERNAME" --password-stdin'
)


def cosign_sign_command(reference: str, recursive: bool, cosign: str = "cosign") -> list[str]:
    """Keyless signature of a pushed `ref@sha256:…` (`recursive`: an index's platform
    manifests too)."""
    return [cosign, "sign", "--yes", *(["--recursive"] if recursive else []), reference]


# Who signs in GitHub Actions: the OIDC issuer of its tokens, and the certificate identity of
# a workflow of the repository at SOURCE_URL (https://github.com/ORG/REPO).
ACTIONS_OIDC_ISSUER = "https://token.actions.githubusercontent.com"


def cosign_verify_command(reference: str, source_url: str, cosign: str = "cosign") -> list[str]:
    """Check that a pushed `ref@sha256:…` carries a keyless signature made by a workflow of
    the repository at `source_url`."""
    identity = f"^{re.escape(source_url)}/\\.github/workflows/"
    return [
        *(cosign, "verify", "--certificate-oidc-issuer", ACTIONS_OIDC_ISSUER),
        *("--certificate-identity-regexp", identity, reference),
    ]


def cosign_attest_command(reference: str, predicate: str, cosign: str = "cosign") -> list[str]:
    """Attest an SLSA provenance predicate of a pushed image `ref@sha256:…` (small: it goes
    to the transparency log whole)."""
    return [
        *(cosign, "attest", "--yes", "--type", "slsaprovenance1"),
        *("--predicate", predicate, reference),
    ]
