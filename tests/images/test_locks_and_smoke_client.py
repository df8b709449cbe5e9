"""No engine needed: the hashed locks match pyproject, and the smoke client fails clearly."""

from __future__ import annotations

import re
import socket
import tomllib

import pytest

from tests.images.docker_support import REPO
from tests.images.serving import run_smoke

PIN = re.compile(r"^([A-Za-z0-9_.\[\],-]+)==([^ ;\\]+)", re.MULTILINE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text()
    return {normalize(name): version for name, version in PIN.findall(text)}


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {normalize(re.split(r"[<>=!~; \[]", d)[0]) for d in project["dependencies"]}


@pytest.mark.parametrize("lock", ["runtime.lock", "gpu.lock", "dev.lock"])
def test_every_pin_has_hashes(lock: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (REPO / "requirements" / lock).read_text())
    packages = [b for b in blocks if PIN.match(b)]
    assert packages, lock
    assert all("--hash=sha256:" in b for b in packages), lock


def test_locks_cover_pyproject_dependencies() -> None:
    """Editing `dependencies` without ./scripts/lock.sh fails here, not in a Docker build."""
    wanted = runtime_dependencies()
    runtime, gpu = pins("runtime.lock"), pins("gpu.lock")
    assert wanted <= set(runtime), f"run ./scripts/lock.sh: {sorted(wanted - set(runtime))}"
    assert wanted - {"onnxruntime"} <= set(gpu), sorted(wanted - set(gpu))
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    assert gpu["onnxruntime-gpu"].startswith("1.26."), "CUDA 12 build (see DOCKERFILE_GUIDE)"
    assert any(name.endswith("-cu12") for name in gpu), "the CUDA 12 runtime wheels"
    assert wanted <= set(pins("dev.lock"))


def test_smoke_client_reports_an_unreachable_server() -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_smoke(f"127.0.0.1:{port}", "mlp", "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr.startswith(f"smoke: FAIL: 127.0.0.1:{port} model=mlp: not ready"), (
        result.stderr
    )


def test_smoke_client_rejects_a_url_with_scheme() -> None:
    result = run_smoke("http://127.0.0.1:8000")
    assert result.returncode == 2
    assert "'http://127.0.0.1:8000'" in result.stderr
