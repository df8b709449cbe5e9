"""What a real engine run would trip on but a plan cannot show: files a build or a check needs
being filtered out of the module's source (SOURCE_IGNORE) or of the build context
(.dockerignore), and the CA secret staying mounted after a build.

Both ignore lists use the .dockerignore pattern language; `ignored` implements it (last
matching pattern wins, `!` re-includes, `**` spans folders) and is itself tested.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from functools import cache

import pytest
from dagger import dag

from onnx_serving.build import SOURCE_IGNORE
from onnx_serving.variants import ALL_DOCKERFILES

from .conftest import make_module
from .plan import REPO, Call, FakeEngine, calls, fake_engine, find, names

CA_MOUNT = "/run/secrets/ca_bundle"


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over '/'-separated paths (a folder matches all in it)."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(?:/.*)?")


def ignored(path: str, patterns: Sequence[str]) -> bool:
    """Whether `path` is excluded by `patterns` (.dockerignore semantics)."""
    excluded = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if _regex(pattern.removeprefix("!")).fullmatch(path):
            excluded = not negated
    return excluded


def test_the_matcher_follows_dockerignore_rules() -> None:
    rules = ["*", "!service/", "!models/", "**/__pycache__", "!dockerfiles/build-venv.sh"]
    assert ignored("README.md", rules)
    assert not ignored("service/app.py", rules)
    assert ignored("service/__pycache__/app.cpython-311.pyc", rules)
    assert not ignored("dockerfiles/build-venv.sh", rules)
    assert ignored("dockerfiles/Dockerfile", rules)
    assert ignored("ci/sdk/x.py", ["ci/sdk"]) and not ignored("ci/sdkx", ["ci/sdk"])
    assert ignored("a/b/.venv3/x", ["**/.venv*"])


@cache
def dockerignore() -> tuple[str, ...]:
    return tuple((REPO / ".dockerignore").read_text().splitlines())


def build_sources(dockerfile: str) -> list[str]:
    """Every context path a Dockerfile reads: COPY/ADD sources and bind-mount sources."""
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if (
            words
            and words[0] in ("COPY", "ADD")
            and not any(w.startswith("--from=") for w in words)
        ):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
        sources += re.findall(r"--mount=type=bind,source=([^,\s]+)", line)
    return [s.rstrip("/") for s in sources]


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES)
def test_every_file_a_dockerfile_reads_reaches_the_build(dockerfile: str) -> None:
    sources = build_sources(dockerfile)
    assert sources, f"no COPY or bind sources found in {dockerfile}"
    # `COPY . dest` takes whatever the context holds: the allow-list itself decides that.
    for source in (s for s in sources if s != "."):
        for path in _tracked_under(source):
            assert not ignored(path, dockerignore()), f"{dockerfile} reads {path}: .dockerignore"
            assert not ignored(path, SOURCE_IGNORE), f"{dockerfile} reads {path}: SOURCE_IGNORE"


@cache
def tracked() -> tuple[str, ...]:
    """Every file git tracks (outside a checkout: every file but bytecode caches, which the
    tests' own servers write there and git would never track)."""
    if not (REPO / ".git").exists():
        files = (p for p in REPO.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        return tuple(p.relative_to(REPO).as_posix() for p in files)
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return tuple(filter(None, listed.split("\0")))


def _tracked_under(source: str) -> list[str]:
    found = [p for p in tracked() if p == source or p.startswith(f"{source}/")]
    assert found, f"nothing tracked at {source}"
    return found


def test_the_checks_see_every_tracked_file() -> None:
    """The test check runs the whole suite on the module's source: no tracked file may be
    ignored (tests read the Dockerfiles, locks, scripts, .trivyignore.yaml, ...)."""
    lost = [p for p in tracked() if ignored(p, SOURCE_IGNORE)]
    assert lost == []


def test_a_folder_added_to_the_ignore_list_is_caught() -> None:
    """The mutation these tests exist for: models/ (or requirements/) left out of the source."""
    for folder in ("models", "requirements", ".trivyignore.yaml"):
        mutated = [*SOURCE_IGNORE, folder]
        assert any(ignored(p, mutated) for p in tracked()), folder
        needed = [
            p
            for d in ALL_DOCKERFILES
            for s in build_sources(d)
            if s != "."
            for p in _tracked_under(s)
        ]
        assert any(ignored(p, mutated) for p in needed) or folder == ".trivyignore.yaml"


def _containers(value: object) -> list[list[Call]]:
    """Every container plan inside a query's arguments (services, tarballs, mounts...)."""
    found: list[list[Call]] = []
    if isinstance(value, list) and value and isinstance(value[0], Call):
        found.append(value)
        for call in value:
            found += _containers(call.args)
    elif isinstance(value, dict):
        for item in value.values():
            found += _containers(item)
    elif isinstance(value, list):
        for item in value:
            found += _containers(item)
    elif hasattr(value, "_ctx"):
        found += _containers(calls(value))  # type: ignore[arg-type]
    return found


def test_the_ca_secret_is_unmounted_from_every_built_container() -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----z"))
    clean = '{"SchemaVersion": 2, "Results": []}'

    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return clean
        return str(FakeEngine().answer(chain))

    with fake_engine({"contents": contents}) as engine:
        asyncio.run(module.publish(tag="v1.0.0", repository="acme/onnx"))
        asyncio.run(module.test())
    built = 0
    for query in engine.queries:
        for chain in [query, *_containers([c.args for c in query])]:
            for i, call in enumerate(chain):
                if call.name == "dockerBuild" and call.args.get("secrets"):
                    built += 1
                    following = chain[i + 1] if i + 1 < len(chain) else None
                    assert following is not None and following.name == "withoutMount", names(chain)
                    assert following.args == {"path": CA_MOUNT}
    assert built > 0
    # And the check container's own pip mount is removed after installing.
    for query in engine.queries:
        for chain in [query, *_containers([c.args for c in query])]:
            mounts = [c for c in find(chain, "withMountedSecret") if c.args["path"] == CA_MOUNT]
            if mounts and "dockerBuild" in names(chain) and find(chain, "withFile"):
                last_mount = max(i for i, c in enumerate(chain) if c in mounts)
                assert any(c.name == "withoutMount" for c in chain[last_mount:]), names(chain)
