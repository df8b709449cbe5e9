"""ci/uv.lock is what the engine's Python runtime locks: its own `uv lock`, run against
ci/pyproject.toml and the SDK folder it copies in (ci/sdk: the SDK's project files of the pinned
release, vendored in ci/sdk-layout), leaves the lock as it is; a lock it would re-resolve fails
here, and so does one after the module's dependencies change.

Hermetic: every uv run gets an empty cache of its own and no user configuration. A current
lock is checked offline (uv needs no package metadata to see that it is current). A stale one
makes uv resolve again, which needs package metadata: it is served on 127.0.0.1 by an index
made from the lock itself (each locked file, with PEP 658 metadata holding its locked
dependencies), so no registry and no earlier run's cache is involved. RUNTIME_UV=PATH runs the
runtime's own uv release (0.10.3 in engine 0.21.x) instead of the test environment's."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .plan import REPO, SDK_VERSION

UV = Path(os.environ.get("RUNTIME_UV") or Path(sys.executable).with_name("uv"))
LOCKED_INDEX = "https://pypi.org/simple"  # the index ci/uv.lock was resolved from
SDK_LAYOUT = REPO / "ci/sdk-layout"
# What the runtime runs in the module folder before `uv sync --no-dev` (sdk/python/runtime/
# main.go, WithUpdates): when the lock is current it changes nothing and needs no network.
RUNTIME_LOCK = ("lock",)


def module_copy(tmp_path: Path, lock: Path = REPO / "ci/uv.lock") -> Path:
    """ci/ as the runtime sees it: the project, its lock and the SDK folder at sdk/."""
    module = tmp_path / "ci"
    module.mkdir()
    shutil.copy2(REPO / "ci/pyproject.toml", module / "pyproject.toml")
    shutil.copy2(lock, module / "uv.lock")
    shutil.copytree(SDK_LAYOUT, module / "sdk")
    return module


def uv_lock(
    module: Path, *options: str, index: str | None = None
) -> subprocess.CompletedProcess[str]:
    # Nothing from this machine's uv state: an empty cache, no uv.toml, no index settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env |= {
        "UV_CACHE_DIR": str(module.parent / "uv-cache"),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
    }
    if index is not None:
        env["UV_DEFAULT_INDEX"] = index
    return subprocess.run(
        [str(UV), *RUNTIME_LOCK, *options],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def runtime_lock(module: Path) -> tuple[subprocess.CompletedProcess[str], bool]:
    """The runtime's `uv lock`, offline: how it ended, and whether it rewrote the lock."""
    before = (module / "uv.lock").read_bytes()
    done = uv_lock(module, "--offline")
    return done, (module / "uv.lock").read_bytes() != before


# ---- a package index made from the lock ----------------------------------------------------


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(dep: dict[str, Any], extra: str | None = None) -> str:
    """A Requires-Dist line for one locked dependency (the lock keeps names, extras and
    markers; the single locked version a name has in the index stands in for its specifier)."""
    line: str = dep["name"] + (f"[{','.join(dep['extra'])}]" if "extra" in dep else "")
    markers = [f"({dep['marker']})"] if "marker" in dep else []
    if extra is not None:
        markers.append(f'extra == "{extra}"')
    return line + (f" ; {' and '.join(markers)}" if markers else "")


def _core_metadata(package: dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {package['name']}", f"Version: {package['version']}"]
    lines += [f"Requires-Dist: {_requirement(d)}" for d in package.get("dependencies", [])]
    for extra, deps in package.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_requirement(d, extra)}" for d in deps]
    return "\n".join(lines) + "\n"


class LockIndex:
    """A PEP 691 (JSON) simple index on 127.0.0.1 listing exactly the registry packages of a
    uv.lock, each file with PEP 658 core metadata, so that a resolver never downloads one."""

    def __init__(self, lock: dict[str, Any]) -> None:
        self.projects: dict[str, list[dict[str, Any]]] = {}
        self.metadata: dict[str, bytes] = {}
        for package in lock["package"]:
            if package["source"] != {"registry": LOCKED_INDEX}:
                continue  # the module itself and the SDK folder are local sources
            metadata = _core_metadata(package).encode()
            files = self.projects.setdefault(_normalize(package["name"]), [])
            for locked in [*package.get("wheels", []), *filter(None, [package.get("sdist")])]:
                filename = locked["url"].rsplit("/", 1)[1]
                algorithm, digest = locked["hash"].split(":", 1)
                files.append(
                    {
                        "filename": filename,
                        "url": f"/files/{filename}",
                        "hashes": {algorithm: digest},
                        "core-metadata": filename.endswith(".whl"),
                        "size": locked["size"],
                        **{k: locked[k] for k in ("upload-time",) if k in locked},
                    }
                )
                self.metadata[f"/files/{filename}.metadata"] = metadata
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                body, kind = None, "application/vnd.pypi.simple.v1+json"
                if path.startswith("/simple/"):
                    name = _normalize(path.removeprefix("/simple/").strip("/"))
                    if name in index.projects:
                        page = {"meta": {"api-version": "1.1"}, "name": name}
                        body = json.dumps(page | {"files": index.projects[name]}).encode()
                elif path in index.metadata:
                    body, kind = index.metadata[path], "text/plain"
                if body is None:
                    self.send_error(404)  # a file download: the resolver must not need one
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def lock_index() -> Iterator[LockIndex]:
    index = LockIndex(tomllib.loads((REPO / "ci/uv.lock").read_text()))
    thread = threading.Thread(target=index.server.serve_forever, daemon=True)
    thread.start()
    yield index
    index.server.shutdown()
    index.server.server_close()


def served_from(module: Path, index: LockIndex) -> None:
    """The copy's lock names the index that serves its packages, as ci/uv.lock names PyPI."""
    lock = module / "uv.lock"
    text = lock.read_text().replace(f'registry = "{LOCKED_INDEX}"', f'registry = "{index.url}"')
    lock.write_text(text)


def lock_check(
    module: Path, *options: str, index: str | None = None
) -> subprocess.CompletedProcess[str]:
    return uv_lock(module, "--check", *options, index=index)


def resolved(lock: dict[str, Any]) -> dict[str, Any]:
    """What a lock resolved to, wherever its files are served from."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("url", "source")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {p["name"]: strip(p) for p in lock["package"]}


# ---- the tests -----------------------------------------------------------------------------


def test_the_runtime_keeps_the_lock(tmp_path: Path) -> None:
    done, rewritten = runtime_lock(module_copy(tmp_path))
    assert done.returncode == 0, (
        "the engine's runtime would re-resolve ci/uv.lock (scripts/lock-module.sh):\n"
        + done.stdout
        + done.stderr
    )
    assert not rewritten, "the engine's runtime would rewrite ci/uv.lock (scripts/lock-module.sh)"


def test_the_index_made_from_the_lock_resolves_to_the_lock(
    tmp_path: Path, lock_index: LockIndex
) -> None:
    # The controls for the next tests: resolving the unchanged module afresh from the index
    # gives the locked packages, and the index with the rewritten source alone is current.
    module = module_copy(tmp_path)
    served_from(module, lock_index)
    done = lock_check(module, index=lock_index.url)
    assert done.returncode == 0, done.stdout + done.stderr
    done = uv_lock(module, "--upgrade", index=lock_index.url)
    assert done.returncode == 0, done.stdout + done.stderr
    again = tomllib.loads((module / "uv.lock").read_text())
    assert resolved(again) == resolved(tomllib.loads((REPO / "ci/uv.lock").read_text()))


def test_a_changed_dependency_makes_it_stale(tmp_path: Path, lock_index: LockIndex) -> None:
    module = module_copy(tmp_path)
    project = module / "pyproject.toml"
    # rich is already in the lock (the SDK needs it): it resolves, and the lock is stale.
    project.write_text(project.read_text().replace('"pyyaml>=6"', '"pyyaml>=6", "rich>=13"'))
    done, _ = runtime_lock(module)
    assert done.returncode != 0  # offline, the runtime's `uv lock` has to resolve again
    served_from(module, lock_index)
    done = lock_check(module, index=lock_index.url)
    assert done.returncode != 0
    assert "needs to be updated" in done.stderr, done.stderr


def test_a_lock_made_without_the_sdk_workspace_is_re_resolved(tmp_path: Path) -> None:
    # A lock made against the SDK's [project] table alone lacks its `dev` group (the member
    # `codegen` among it): the runtime's `uv lock` resolves it again.
    lock = (REPO / "ci/uv.lock").read_text()
    assert "[package.metadata.requires-dev]" in lock, "ci/uv.lock lacks the SDK's dev group"
    start = lock.index("[package.metadata.requires-dev]")
    stripped = lock[:start] + lock[lock.index("[[package]]", start) :]
    (tmp_path / "uv.lock").write_text(stripped)
    done, rewritten = runtime_lock(module_copy(tmp_path, tmp_path / "uv.lock"))
    assert done.returncode != 0 or rewritten


def _requirements(lines: list[str]) -> set[tuple[str, frozenset[str], str, str]]:
    reqs = [Requirement(line) for line in lines]
    return {
        (canonicalize_name(r.name), frozenset(r.extras), str(r.specifier), str(r.marker))
        for r in reqs
    }


def test_the_sdk_layout_is_the_pinned_release() -> None:
    assert json.loads((REPO / "dagger.json").read_text())["engineVersion"] == f"v{SDK_VERSION}"
    sdk = tomllib.loads((SDK_LAYOUT / "pyproject.toml").read_text())
    # The installed dagger-io is the pinned release (plan.py): same requirements as the layout.
    meta = importlib.metadata.metadata("dagger-io")
    released = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert _requirements(sdk["project"]["dependencies"]) == _requirements(released)
    assert sdk["project"]["requires-python"] == meta["Requires-Python"]
    # The workspace the runtime copies in: unversioned source, a `dev` group naming `codegen`.
    assert sdk["project"]["version"] == "0.0.0"
    assert sdk["tool"]["uv"]["workspace"]["members"] == ["codegen"]
    assert "codegen" in sdk["dependency-groups"]["dev"]
    codegen = tomllib.loads((SDK_LAYOUT / "codegen/pyproject.toml").read_text())
    assert codegen["project"]["name"] == "codegen"
    # Project files only: no source code is vendored.
    files = sorted(p.relative_to(SDK_LAYOUT).as_posix() for p in SDK_LAYOUT.rglob("*"))
    assert files == ["codegen", "codegen/pyproject.toml", "pyproject.toml"]


def test_the_lock_pins_the_sdk_layout() -> None:
    lock = tomllib.loads((REPO / "ci/uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    sdk = packages["dagger-io"]
    assert sdk["source"] == {"editable": "sdk"}  # the folder the runtime copies in
    layout = tomllib.loads((SDK_LAYOUT / "pyproject.toml").read_text())
    wanted = {name for name, *_ in _requirements(layout["project"]["dependencies"])}
    assert {d["name"] for d in sdk["dependencies"]} == wanted
    dev = {d["name"]: d for d in sdk["metadata"]["requires-dev"]["dev"]}
    assert dev["codegen"] == {"name": "codegen", "editable": "sdk/codegen"}
    assert "codegen" not in packages  # a dev group of the SDK is recorded, never installed
    assert packages["onnx-serving"]["source"] == {"editable": "."}
