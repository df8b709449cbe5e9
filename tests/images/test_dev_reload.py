"""The dev image restarts the server when mounted source changes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from onnx_serving.variants import Variant
from tests.images.docker_support import REPO, Container
from tests.images.serving import run_smoke

pytestmark = pytest.mark.docker

STARTED = "Application startup complete"


def wait_for_restarts(container: Container, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if container.logs().count(STARTED) >= count:
            return
        time.sleep(0.5)
    pytest.fail(f"server did not start {count} times:\n{container.logs()[-3000:]}")


def test_dev_image_restarts_server_on_source_change(
    built_image: Callable[[Variant], str],
    start_container: Callable[..., Container],
    tmp_path: Path,
) -> None:
    source = tmp_path / "service"
    shutil.copytree(REPO / "service", source, ignore=shutil.ignore_patterns("__pycache__"))
    source.chmod(0o755)
    container = start_container(
        built_image(Variant.dev), "--read-only", "--volume", f"{source}:/app/service:ro"
    )
    container.wait_healthy()
    wait_for_restarts(container, 1)

    marker = source / "healthcheck.py"
    marker.write_text(marker.read_text() + "\n# edited by test_dev_reload\n")
    wait_for_restarts(container, 2)
    smoke = run_smoke(container.url)  # waits (bounded) until the new process is ready
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert container.exec("grep", "-c", "edited by test_dev_reload", "/app/service/healthcheck.py")
