"""`publish` reads the release tags of the module's own checkout through the local engine, a
`git worktree` checkout too (its .git is a file pointing into the main checkout's .git): the
contextual GitRepository argument, its `tags` as the SDK queries them, the tags a release
computes from them, and a `publish` run from the worktree that gets past them. Nothing is
built: the run stops at a registry nobody listens on."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dagger import dag

from local_engine import api, git
from local_engine.cli import context_root
from local_engine.root import Query
from local_engine.session import Session
from onnx_serving import release
from onnx_serving.variants import Variant
from tests.pipeline.plan import fake_engine

REPO = Path(__file__).resolve().parents[2]
HERMETIC = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
# What release.git_tags sends: the SDK loads an argument by ID through `node`.
TAGS_QUERY = """
query ($id: ID!) {
  node(id: $id) { ... on GitRepository { tags(patterns: ["refs/tags/v*"]) } }
}
"""

pytestmark = pytest.mark.docker


def _git(checkout: Path, *args: str) -> None:
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    subprocess.run(
        ["git", "-C", str(checkout), *identity, *args],
        env=HERMETIC,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A worktree of a repository holding the module, released as v1.2.3 (packed) and
    v1.3.0 (annotated), with a tag and a branch that are not releases."""
    main = tmp_path / "main"
    main.mkdir()
    shutil.copy(REPO / "dagger.json", main)
    shutil.copytree(REPO / "ci", main / "ci", ignore=shutil.ignore_patterns("__pycache__", "sdk"))
    _git(main, "init", "-q")
    _git(main, "add", "-A")
    _git(main, "commit", "-q", "-m", "the module")
    _git(main, "tag", "v1.2.3")
    _git(main, "pack-refs", "--all")
    _git(main, "tag", "-a", "-m", "release 1.3.0", "v1.3.0")
    _git(main, "tag", "nightly")
    _git(main, "branch", "v2.0.0-wip")
    checkout = tmp_path / "worktree"
    _git(main, "worktree", "add", "-q", str(checkout))
    assert (checkout / ".git").is_file()  # a pointer, not a folder
    return checkout


def test_the_worktrees_contextual_repository_answers_its_release_tags(
    worktree: Path, tmp_path: Path
) -> None:
    session = Session.create(caches_dir=tmp_path / "caches")
    try:
        repository = git.contextual_repository(context_root(worktree), "/.git")
        variables = {"id": repository.id(session)}
        answer = asyncio.run(api.execute(session, TAGS_QUERY, variables, Query(None)))
    finally:
        asyncio.run(session.close())
    # Short names, each tag once (the annotated one not again peeled), branches left out.
    assert answer == {"data": {"node": {"tags": ["v1.2.3", "v1.3.0"]}}}


def test_a_release_below_the_worktrees_latest_leaves_latest(worktree: Path) -> None:
    checkout = dag.host().directory(str(worktree)).as_git()
    repository = "ghcr.io/acme/onnx"
    with fake_engine():
        released = asyncio.run(release.git_tags(checkout))
        planned = asyncio.run(
            release.plan("v1.2.3", False, checkout, [Variant.cpu], repository, "", "")
        )
    assert released == ["v1.2.3", "v1.3.0"]
    # v1.3.0 is higher: 1 and latest stay where they are.
    assert planned.addresses[Variant.cpu] == [f"{repository}:1.2.3", f"{repository}:1.2"]


def test_publish_from_a_worktree_gets_past_its_release_tags(worktree: Path) -> None:
    with socket.socket() as listener:  # a loopback port nobody listens on once closed
        listener.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{listener.getsockname()[1]}"
    release_args = ("--tag", "v1.2.3", "--repository", "team/app", "--registry", registry)
    done = subprocess.run(
        [sys.executable, "-m", "local_engine", "publish", *release_args],
        cwd=REPO,
        env={**os.environ, "LOCAL_ENGINE_MODULE": str(worktree)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # The release tags were read (the plan comes first); the registry check stops the run.
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert f"registry {registry} is out of the module's reach" in last, done.stderr[-2000:]
