"""`publish` over tags that already exist: the release tags in the checkout's .git decide which
floating tags move (docs/REGISTRY_GUIDE.md), a release never moves `edge` and an edge build
never moves a release tag, every address is pushed once and printed in order, and a push the
registry refuses (an immutable tag that already exists) fails the call in one line naming it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import make_module
from .git_checkout import git_repository
from .plan import Call, FakeEngine, fake_engine

REPO = "ghcr.io/acme/onnx"
CLEAN_REPORT = json.dumps({"SchemaVersion": 2, "ArtifactName": "/scan/image.tar", "Results": []})
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _answers(**more: Any) -> dict[str, Any]:
    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return CLEAN_REPORT
        return str(FakeEngine().answer(chain))

    return {"contents": contents, **more}


def _git(tmp_path: Path, *tags: str) -> Any:
    """A checkout's repository holding `tags` (loose refs) and a packed v0.9.0."""
    return git_repository(
        tmp_path / "checkout",
        ["tag", "v0.9.0"],
        ["pack-refs", "--all"],
        *(["tag", tag] for tag in tags),
    )


def _publish(module: Any, **kwargs: Any) -> tuple[list[str], list[str]]:
    """(the printed tags in order, the addresses pushed) of one publish call."""
    with fake_engine(_answers()) as engine:
        out: str = asyncio.run(module.publish(repository="acme/onnx", **kwargs))
    printed = [line.split("@")[0] for line in out.splitlines()]
    return printed, [f"{REPO}:{tag}" for tag in written(engine.registry.steps)]


def written(steps: list[str]) -> list[str]:
    """The tags pushed, in order: by the engine ("publish TAG") or the module ("put TAG");
    an index's annotations put right after the engine pushed it are the same push."""
    tags: list[str] = []
    for n, step in enumerate(steps):
        verb, _, tag = step.partition(" ")
        if verb != "sign" and not (n and steps[n - 1] == f"publish {tag}"):
            tags.append(tag)
    return tags


def _tags(addresses: list[str]) -> list[str]:
    return [a.removeprefix(f"{REPO}:") for a in addresses]


def test_a_release_whose_own_tag_is_in_git_moves_its_floating_tags(tmp_path: Path) -> None:
    # The release workflow runs on the tag push, with fetch-depth 0: its own tag is there,
    # with older releases and a higher prerelease (which moves nothing).
    git = _git(tmp_path, "v1.2.3", "v1.2.2", "v1.1.0", "v1.3.0-rc.1", "nightly")
    printed, pushed = _publish(make_module(), tag="v1.2.3", git=git)
    assert _tags(printed) == [
        *("1.2.3", "1.2", "1", "latest"),
        *("1.2.3-gpu", "1.2-gpu", "1-gpu", "latest-gpu"),
    ]
    assert sorted(pushed) == sorted(printed)  # each printed tag was pushed, once


def test_a_release_below_an_existing_one_leaves_its_floating_tags(tmp_path: Path) -> None:
    git = _git(tmp_path, "v1.2.3", "v1.2.4", "v2.0.0")
    printed, pushed = _publish(make_module(), tag="v1.2.3", git=git, variants=["cpu"])
    assert _tags(printed) == ["1.2.3"]  # re-publishing an old release moves nothing
    assert pushed == printed


def test_a_release_never_moves_edge(tmp_path: Path) -> None:
    _, pushed = _publish(make_module(revision=REVISION), tag="v3.0.0", git=_git(tmp_path))
    assert not [t for t in _tags(pushed) if t.startswith(("edge", "sha-"))]
    assert "latest" in _tags(pushed) and "latest-gpu" in _tags(pushed)


def test_an_edge_build_never_moves_a_release_tag(tmp_path: Path) -> None:
    git = _git(tmp_path, "v1.0.0", "v2.0.0")
    printed, pushed = _publish(make_module(revision=REVISION), edge=True, git=git)
    assert _tags(printed) == ["edge", "sha-0123456", "edge-gpu", "sha-0123456-gpu"]
    assert sorted(pushed) == sorted(printed)


def test_every_address_is_pushed_once_in_the_order_of_the_variants_given() -> None:
    module = make_module(revision=REVISION)
    printed, pushed = _publish(module, tag="v1.2", variants=["gpu", "cpu", "gpu"])
    assert _tags(printed) == [
        *("1.2-gpu", "1-gpu", "latest-gpu", "sha-0123456-gpu"),
        *("1.2", "1", "latest", "sha-0123456"),
    ]
    assert sorted(pushed) == sorted(printed)


def test_a_push_the_registry_refuses_fails_publish() -> None:
    # E.g. ECR/ACR with the exact-version tags immutable: 1.0.0 exists, it cannot be moved.
    refused = f"{REPO}:1.0.0-gpu"
    module = make_module()
    with fake_engine(_answers()) as engine, pytest.raises(BaseException) as failed:
        engine.registry.refused.add("1.0.0-gpu")
        engine.registry.refusal = "tag already exists and is immutable"
        asyncio.run(module.publish(tag="v1.0.0", repository="acme/onnx"))
    errors = (
        list(failed.value.exceptions)
        if isinstance(failed.value, BaseExceptionGroup)
        else [failed.value]
    )
    assert [str(e) for e in errors] == [
        f"push {refused} failed: tag already exists and is immutable"
    ]
