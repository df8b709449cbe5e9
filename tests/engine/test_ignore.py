"""The engine's exclude rules (local_engine.ignore), checked against BuildKit's own walker.

BuildKit applies a .dockerignore with the same fsutil filter and moby patternmatcher that
the engine's host.directory uses; `docker build --output type=local` of `FROM scratch` +
`COPY . /` writes out exactly what it loaded. Where the engine differs (it drops patterns
that are not local paths instead of stripping a leading "/"), the rows say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from local_engine.ignore import copy_tree, is_excluded
from onnx_serving.build import SOURCE_IGNORE

DOCKER = "/usr/bin/docker"

# path -> file content; a path ending in "/" is an empty folder, "->" makes a symlink.
TREE = {
    "README.md": "readme",
    "app.py": "print()",
    "run.sh": "#!/bin/sh",
    "mylink": "-> README.md",
    ".git/HEAD": "ref",
    ".venv/bin/python": "py",
    ".venv-old/lib/x.py": "x",
    "service/__init__.py": "",
    "service/__pycache__/a.pyc": "pyc",
    "service/sub/mod.py": "mod",
    "service/sub/__pycache__/b.pyc": "pyc",
    "docs/a.md": "a",
    "docs/b.txt": "b",
    "docs/guide/c.md": "c",
    "docs/empty/": "",
    "build/out.bin": "bin",
    "build/keep/k.txt": "k",
    "x.egg-info/PKG-INFO": "pkg",
    "ci/sdk/setup.py": "sdk",
    "ci/src/main.py": "main",
}
EVERYTHING = {
    "README.md", "app.py", "run.sh", "mylink", ".git", ".git/HEAD", ".venv", ".venv/bin",
    ".venv/bin/python", ".venv-old", ".venv-old/lib", ".venv-old/lib/x.py", "service",
    "service/__init__.py", "service/__pycache__", "service/__pycache__/a.pyc", "service/sub",
    "service/sub/mod.py", "service/sub/__pycache__", "service/sub/__pycache__/b.pyc", "docs",
    "docs/a.md", "docs/b.txt", "docs/guide", "docs/guide/c.md", "docs/empty", "build",
    "build/out.bin", "build/keep", "build/keep/k.txt", "x.egg-info", "x.egg-info/PKG-INFO",
    "ci", "ci/sdk", "ci/sdk/setup.py", "ci/src", "ci/src/main.py",
}  # fmt: skip
DOCS = {"docs", "docs/a.md", "docs/b.txt", "docs/guide", "docs/guide/c.md", "docs/empty"}
BUILD = {"build", "build/out.bin", "build/keep", "build/keep/k.txt"}
PYCACHE = {
    "service/__pycache__", "service/__pycache__/a.pyc",
    "service/sub/__pycache__", "service/sub/__pycache__/b.pyc",
}  # fmt: skip

# (patterns, what is left out) — the same in BuildKit and in the engine.
CASES: list[tuple[list[str], set[str]]] = [
    ([], set()),
    (["*.md"], {"README.md"}),  # "*" never crosses "/"
    (["**/*.md"], {"README.md", "docs/a.md", "docs/guide/c.md"}),
    (["docs"], DOCS),  # a folder takes everything under it
    (["docs/*"], DOCS - {"docs"}),  # the folder itself stays, empty
    (["build/**"], BUILD - {"build"}),
    (["docs/**/*.md"], {"docs/a.md", "docs/guide/c.md"}),  # "**" also matches no folder
    (["**/__pycache__"], PYCACHE),
    (["?pp.py", "[rR]*"], {"app.py", "run.sh", "README.md"}),
    (["[!a]*.py"], {"app.py"}),  # a regexp class: "!" is literal, not a negation
    (["[^a]*.py"], set()),  # a regexp class: "^" negates, "app.py" starts with "a"
    (["mylink"], {"mylink"}),  # the symlink itself, never its target
    (["**/.venv*"], {".venv", ".venv/bin", ".venv/bin/python"} | {
        ".venv-old", ".venv-old/lib", ".venv-old/lib/x.py"}),
    ([" docs ", "./build", "docs/../app.py"], DOCS | BUILD | {"app.py"}),  # trimmed, cleaned
    (["docs", "!docs/guide"], DOCS - {"docs", "docs/guide", "docs/guide/c.md"}),
    (["docs", "!docs/*.md"], DOCS - {"docs", "docs/a.md"}),  # "*" stays in docs/
    (["build", "!build/keep/k.txt"], BUILD - {"build", "build/keep", "build/keep/k.txt"}),
    (["docs", "!docs"], set()),  # the last matching pattern wins
    (["*", "!service"], EVERYTHING - {
        "service", "service/__init__.py", "service/__pycache__", "service/__pycache__/a.pyc",
        "service/sub", "service/sub/mod.py", "service/sub/__pycache__",
        "service/sub/__pycache__/b.pyc"}),
    (["**"], EVERYTHING),
]  # fmt: skip

# Rows where the engine's own copy of fsutil (internal/fsutil/filter.go `Walk`) is newer than
# the BuildKit of Debian's Docker 20.10: it walks into an excluded folder when a "!" pattern
# has a glob, and creates an excluded folder only for what is re-included inside it.
NEWER_WALKER: list[tuple[list[str], set[str]]] = [
    (["docs", "!**/c.md"], DOCS - {"docs", "docs/guide", "docs/guide/c.md"}),
    (["!docs", "docs"], DOCS),  # walked for "!docs", but nothing in it comes back
    (["**", "!**/*.py"], EVERYTHING - {
        "app.py", ".venv-old", ".venv-old/lib", ".venv-old/lib/x.py", "service",
        "service/__init__.py", "service/sub", "service/sub/mod.py", "ci", "ci/sdk",
        "ci/sdk/setup.py", "ci/src", "ci/src/main.py"}),
]  # fmt: skip

# Rows where the engine's host.directory rewriting differs from a .dockerignore file
# (core/schema/host.go `directory`: patterns that are not filepath.IsLocal are dropped).
ENGINE_ONLY: list[tuple[list[str], set[str]]] = [
    (["/docs"], set()),  # absolute: dropped, where .dockerignore would strip the "/"
    (["../docs", "!"], set()),  # outside the root, and an empty pattern: dropped
    (["."], EVERYTHING),  # "." is rewritten to "*"
    (["docs", "!/docs/guide"], DOCS),  # a dropped "!" pattern re-includes nothing
]


def make_tree(root: Path) -> None:
    for path, content in TREE.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith("/"):
            target.mkdir(exist_ok=True)
        elif content.startswith("-> "):
            target.symlink_to(content.removeprefix("-> "))
        else:
            target.write_text(content)
    (root / "run.sh").chmod(0o755)
    (root / "docs/b.txt").chmod(0o600)


def listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, mode bits, content or link target), for every entry under root."""
    found: dict[str, tuple[str, int, str]] = {}
    for folder, folders, files in os.walk(root):
        for name in [*folders, *files]:
            path = Path(folder, name)
            status = path.lstat()
            if path.is_symlink():
                entry = ("link", 0, os.readlink(path))
            elif path.is_dir():
                entry = ("dir", status.st_mode & 0o7777, "")
            else:
                entry = ("file", status.st_mode & 0o7777, path.read_text())
            found[path.relative_to(root).as_posix()] = entry
    return found


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    make_tree(root)
    return root


def expected_listing(source: Path, excluded: set[str]) -> dict[str, tuple[str, int, str]]:
    return {path: entry for path, entry in listing(source).items() if path not in excluded}


@pytest.mark.parametrize(("patterns", "excluded"), CASES + NEWER_WALKER + ENGINE_ONLY, ids=repr)
def test_copy_tree_loads_what_the_engine_loads(
    source: Path, tmp_path: Path, patterns: list[str], excluded: set[str]
) -> None:
    copy_tree(source, tmp_path / "loaded", patterns)

    assert listing(tmp_path / "loaded") == expected_listing(source, excluded)


@pytest.mark.parametrize(("patterns", "excluded"), CASES + NEWER_WALKER + ENGINE_ONLY, ids=repr)
def test_is_excluded_says_which_files_are_left_out(patterns: list[str], excluded: set[str]) -> None:
    # Files only: a folder left out for itself still appears when something in it is kept.
    files = [path for path in TREE if not path.endswith("/")]

    assert {path for path in files if is_excluded(path, patterns)} == excluded & set(files)


def test_paths_are_cleaned_and_the_root_is_never_excluded() -> None:
    assert is_excluded("./docs/a.md", ["docs"])
    assert is_excluded("/docs//guide/../a.md", ["docs/a.md"])
    assert not is_excluded(".", ["*"])
    with pytest.raises(ValueError, match="outside"):
        is_excluded("../x", [])


def test_the_destination_must_be_new_or_empty(source: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")

    with pytest.raises(ValueError, match="not an empty folder"):
        copy_tree(source, taken, [])
    assert [entry.name for entry in taken.iterdir()] == ["file"]


def test_a_bad_pattern_is_refused(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad ignore pattern"):
        copy_tree(source, tmp_path / "loaded", ["docs/[a"])


def test_the_module_source_ignore_list_keeps_what_the_builds_read(
    source: Path, tmp_path: Path
) -> None:
    for path in [
        "mutants/x.py",
        "bench/results/raw/r.json",
        "bench/results/latest.json",
        ".cache/pip/x",
        "service/.mypy_cache/m",
        "tests/.pytest_cache/p",
        ".ruff_cache/r",
        "tests/.hypothesis/h",
        "deploy/.venv-tools/bin/t",
    ]:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text("x")

    copy_tree(source, tmp_path / "loaded", SOURCE_IGNORE)

    loaded = set(listing(tmp_path / "loaded"))
    assert loaded == {
        "README.md", "app.py", "run.sh", "mylink", "service", "service/__init__.py",
        "service/sub", "service/sub/mod.py", *DOCS, *BUILD, "ci", "ci/src", "ci/src/main.py",
        "bench", "bench/results", "bench/results/latest.json", "deploy", "tests",
    }  # fmt: skip


def docker_build_context(context: Path, output: Path, patterns: Sequence[str]) -> None:
    """What BuildKit copies out of `context` with these patterns as its .dockerignore."""
    dockerfile = context.parent / f"Dockerfile.{uuid.uuid4().hex[:8]}"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    (context / ".dockerignore").write_text("".join(f"{line}\n" for line in patterns))
    try:
        subprocess.run(
            [DOCKER, "build", "--quiet", "--file", str(dockerfile),
             "--output", f"type=local,dest={output}", str(context)],
            check=True, capture_output=True, text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )  # fmt: skip
    finally:
        (context / ".dockerignore").unlink()
        dockerfile.unlink()
    ignore_file = output / ".dockerignore"
    if ignore_file.exists():
        ignore_file.unlink()


@pytest.mark.docker
def test_the_table_is_what_buildkit_loads(source: Path, tmp_path: Path) -> None:
    if shutil.which(DOCKER) is None:
        pytest.skip(f"{DOCKER} (Debian's docker.io client, with BuildKit) is not installed")
    differences = {}
    for number, (patterns, excluded) in enumerate(CASES):
        output = tmp_path / f"buildkit-{number}"
        docker_build_context(source, output, patterns)
        # BuildKit's COPY writes folders owned by the build, with their source modes.
        got = listing(output)
        if got != expected_listing(source, excluded):
            differences[repr(patterns)] = sorted(set(got) ^ (EVERYTHING - excluded))

    assert differences == {}
