"""Fixtures for the security tests: the pinned scanners of .venv, and a real Trivy report of a
tree with a planted fake secret and a bad Dockerfile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onnx_serving import trivy

REPO = Path(__file__).resolve().parents[2]

# Assembled at run time so that no file of this repo contains a secret-shaped literal
# (the repo scan must stay clean). Not a real key: a made-up value in AWS's key shape.
FAKE_AWS_KEY_ID = "AKIA" + "2E0A8F3B244C9986"
FAKE_AWS_SECRET = "k7kpl1FQ1n5EQo6AFz9S" + "uQUoKm0n5oHKDshyXpyF"

# Runs as root, installs recommended packages without pinning, uses a moving tag.
BAD_DOCKERFILE = """\
FROM debian:latest
RUN apt-get update && apt-get install -y curl
ADD app.tar.gz /app
"""

# Installed packages whose metadata declare a forbidden (AGPL) and a restricted (GPL) license.
PLANTED_PACKAGES = {
    "node_modules/leftpad/package.json": (
        '{"name": "leftpad", "version": "1.0.0", "license": "AGPL-3.0"}\n'
    ),
    "venv/lib/python3.11/site-packages/gplthing-1.0.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: gplthing\nVersion: 1.0\nLicense: GPL-3.0-only\n"
    ),
}


def _tool_path(name: str) -> str:
    """A scanner installed by the dev deps into this venv (scripts/test.sh doesn't put
    .venv/bin on PATH, so look beside the interpreter)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: run ./scripts/dev_env.sh")
    return str(path)


def _run_trivy(cmd: list[str], report: Path) -> dict[str, Any]:
    """Run a Trivy command line that writes JSON to `report`, and load the report."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stderr[-3000:]}"
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def committable_files() -> list[str]:
    """Repo-relative paths git would commit. Outside a git checkout (the Dagger `test`
    container gets the source without .git, already filtered by the module's Ignore list)
    every file counts."""
    if not (REPO / ".git").exists():
        return [str(path.relative_to(REPO)) for path in REPO.rglob("*") if path.is_file()]
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return list(filter(None, listed.split("\0")))


@pytest.fixture(scope="session")
def repo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what git would commit (tracked + untracked, not ignored): the repo as a
    fresh clone and the Dagger module's source see it, without local caches and downloads."""
    tree = tmp_path_factory.mktemp("repo")
    for relative in committable_files():
        source = REPO / relative
        if source.is_file():  # skips files deleted but still tracked
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / relative)
    return tree


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """Path of a pinned dev-dependency scanner: tool("hadolint")."""
    return _tool_path


@pytest.fixture(scope="session")
def run_trivy() -> Callable[[list[str], Path], dict[str, Any]]:
    return _run_trivy


@pytest.fixture(scope="session")
def trivy_bin() -> str:
    return _tool_path("trivy")


@pytest.fixture(scope="session")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("trivy-cache"))


@pytest.fixture(scope="session")
def planted_report(
    tmp_path_factory: pytest.TempPathFactory, trivy_bin: str, trivy_cache: str
) -> dict[str, Any]:
    """Trivy's real JSON report on a root filesystem with a fake AWS key, a bad Dockerfile and
    packages under copyleft licenses (`rootfs` mode reads installed packages' metadata)."""
    tree = tmp_path_factory.mktemp("planted")
    (tree / "Dockerfile").write_text(BAD_DOCKERFILE)
    (tree / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY_ID}"\nAWS_SECRET_ACCESS_KEY = "{FAKE_AWS_SECRET}"\n'
    )
    for relative, text in PLANTED_PACKAGES.items():
        (tree / relative).parent.mkdir(parents=True)
        (tree / relative).write_text(text)
    out = tree.parent / "planted-report.json"
    cmd = trivy.fs_scan_command(
        str(tree), str(out), mode="rootfs", trivy=trivy_bin, cache_dir=trivy_cache
    )
    return _run_trivy(cmd, out)
