"""Every image serves, healthy, under the hardened run options users should deploy with:
read-only root filesystem (a tmpfs /tmp only), all capabilities dropped, no privilege
escalation, non-root. Checked from inside (the kernel's view of PID 1) and from outside (the
image's HEALTHCHECK and the tritonclient smoke client on the published loopback port)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from onnx_serving import commands
from onnx_serving.images import HARDENED_RUN_FLAGS, IMAGE_UID
from onnx_serving.variants import Variant

from .conftest import REPO

# The first test to ask for an image builds it (the GPU one: ~2.5 GB of wheels, cold cache).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]


def proc_status(container: Any) -> dict[str, str]:
    """/proc/1/status of the container's main process, as {field: value}."""
    text = container.exec("cat", "/proc/1/status")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


@pytest.mark.parametrize("variant", list(Variant))
def test_image_serves_hardened(
    variant: Variant, built_image: Callable[[Variant], str], start_container: Callable[..., Any]
) -> None:
    container = start_container(built_image(variant), *HARDENED_RUN_FLAGS)
    container.wait_healthy()  # the image's own HEALTHCHECK, under these restrictions

    status = proc_status(container)
    uid = str(IMAGE_UID)
    assert status["Uid"].split() == [uid] * 4, status["Uid"]  # real, effective, saved, fs
    assert status["Gid"].split() == [uid] * 4, status["Gid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"

    # The root filesystem is really read-only for the server's user, /tmp is not.
    denied = container.docker.run(
        "exec", container.name, "sh", "-c", "touch /app/x || touch /x", check=False
    )
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    container.exec("sh", "-c", "touch /tmp/x")

    smoke = subprocess.run(
        commands.smoke_command(container.url, python=sys.executable),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr + container.logs()[-3000:]
