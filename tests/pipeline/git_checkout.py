"""A real git checkout for the tests that read release tags through the contextual
GitRepository `publish` takes (core/modulesource.go LoadContextGit): one empty commit, then
the given git commands (tags, pack-refs), with no user or system git configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from dagger import dag


def git_repository(checkout: Path, *commands: list[str]) -> Any:
    """The GitRepository of a new checkout at `checkout` after `commands` ran in it."""
    checkout.mkdir()
    run = ["git", "-C", str(checkout), "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    hermetic = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "release"], *commands):
        subprocess.run([*run, *args], env=hermetic, check=True, capture_output=True)
    return dag.host().directory(str(checkout)).as_git()
