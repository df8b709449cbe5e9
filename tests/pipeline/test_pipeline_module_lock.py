"""ci/uv.lock is what the engine's Python runtime would lock: `uv lock --check` (offline)
passes against ci/pyproject.toml and a stand-in of the runtime's SDK folder made from the
pinned dagger-io release (toolbox.py), and fails once the module's dependencies change."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from onnx_serving.toolbox import engine_version, sdk_pyproject

from .plan import REPO, SDK_VERSION

UV = Path(sys.executable).with_name("uv")


def module_copy(tmp_path: Path) -> Path:
    module = tmp_path / "ci"
    (module / "sdk").mkdir(parents=True)
    shutil.copy2(REPO / "ci/pyproject.toml", module / "pyproject.toml")
    shutil.copy2(REPO / "ci/uv.lock", module / "uv.lock")
    (module / "sdk/pyproject.toml").write_text(sdk_pyproject(engine_version(REPO / "dagger.json")))
    return module


def lock_check(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), "lock", "--check", "--offline"],
        cwd=module,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_lock_is_current(tmp_path: Path) -> None:
    done = lock_check(module_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_changed_dependency_makes_it_stale(tmp_path: Path) -> None:
    module = module_copy(tmp_path)
    project = module / "pyproject.toml"
    # rich is already in the lock (the SDK needs it): offline resolution works, the lock is stale.
    project.write_text(project.read_text().replace('"pyyaml>=6"', '"pyyaml>=6", "rich>=13"'))
    done = lock_check(module)
    assert done.returncode != 0
    assert "needs to be updated" in done.stderr, done.stderr


def test_the_lock_pins_the_sdk_release_dependencies() -> None:
    lock = tomllib.loads((REPO / "ci/uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    sdk = packages["dagger-io"]
    assert sdk["source"] == {"editable": "sdk"}  # the folder the runtime copies in
    assert engine_version(REPO / "dagger.json") == SDK_VERSION
    stand_in = tomllib.loads(sdk_pyproject(SDK_VERSION))["project"]["dependencies"]
    wanted = {d.split("[")[0].split(">")[0].split("!")[0].split("=")[0].strip() for d in stand_in}
    assert {d["name"] for d in sdk["dependencies"]} == {w.replace("_", "-") for w in wanted}
    assert packages["onnx-serving"]["source"] == {"editable": "."}


def test_the_sdk_stand_in_refuses_another_release() -> None:
    with pytest.raises(ValueError, match=r"dagger\.json pins the engine 0\.0\.1"):
        sdk_pyproject("0.0.1")
