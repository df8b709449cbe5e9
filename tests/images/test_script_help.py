"""Every script in scripts/ answers -h/--help with its usage, under its own name, and exits 0
before any set-up. Each runs with recording stand-ins for the tools set-up would use first
(apt, dockerd, docker, debootstrap, uv, pip, sudo) ahead on PATH, and a python3 that records
its arguments: none may be called, python3 only to print an argparse parser's help."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.images.docker_support import REPO

# Every script a user runs; debian_mirror.sh and lib/usage.sh are sourced, not run.
SCRIPTS = [
    "build.sh",
    "dev_env.sh",
    "ensure_image.sh",
    "lock-module.sh",
    "lock.sh",
    "manifests.sh",
    "mutation.sh",
    "pipeline.sh",
    "push.sh",
    "run-local.sh",
    "scan.sh",
    "setup.sh",
    "test-image.sh",
    "test.sh",
]
SET_UP_TOOLS = [
    "apt",
    "apt-get",
    "dpkg",
    "dockerd",
    "docker",
    "debootstrap",
    "docker-registry",
    "pg_ctlcluster",
    "uv",
    "pip",
    "pip3",
    "sudo",
    "update-binfmts",
]


def test_every_script_is_covered() -> None:
    """A new script joins SCRIPTS (and so gets a --help before its set-up)."""
    scripts = sorted(p.name for p in (REPO / "scripts").glob("*.sh"))
    assert sorted([*SCRIPTS, "debian_mirror.sh"]) == scripts


def recording_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose set-up tools only append their command line to the returned file."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = shutil.which("python3")
    assert python3 is not None
    for tool in SET_UP_TOOLS:
        stand_in = bin_dir / tool
        stand_in.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 1\n')
        stand_in.chmod(0o755)
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\necho "python3 $*" >> "{calls}"\nexec "{python3}" "$@"\n')
    wrapper.chmod(0o755)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DOCKER", "VENV"))
    }
    env |= {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "DOCKER": str(bin_dir / "docker"),
        "SETUP_STATE_DIR": str(tmp_path / "setup-state"),
        "VENV": str(tmp_path / "no-venv"),
        "UV": str(bin_dir / "uv"),
    }
    return env, calls


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_help_prints_the_usage_before_any_set_up(tmp_path: Path, name: str, flag: str) -> None:
    env, calls = recording_tools(tmp_path)
    done = subprocess.run(
        [str(REPO / "scripts" / name), flag],
        cwd=tmp_path,  # not the checkout: nothing may be written there either
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert f"scripts/{name}" in done.stdout.splitlines()[0] + done.stdout
    if name != "scan.sh":  # scan.sh's usage is its scanner front end's own text
        assert done.stdout.startswith(f"usage: scripts/{name}\n")
    made = calls.read_text().splitlines() if calls.exists() else []
    assert all(line.startswith("python3 -m ") and line.endswith(" --help") for line in made), made
    assert not (tmp_path / "setup-state").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"] + (["calls"] if made else [])


def test_arguments_after_a_double_dash_are_not_asked_for_help(tmp_path: Path) -> None:
    """`--help` after `--` belongs to what the script runs; the help check leaves it alone
    (here manifests.sh's renderer gets it, as a value it refuses)."""
    env, _ = recording_tools(tmp_path)
    done = subprocess.run(
        [str(REPO / "scripts" / "manifests.sh"), "--", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and not done.stdout.startswith("usage: scripts/manifests.sh")
