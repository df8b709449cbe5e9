"""The release smoke test (`python -m onnx_serving.smoke`, what `publish` runs against every
image it is about to push) against a live server, without Docker."""

from __future__ import annotations

import subprocess
import sys

from tests.service.live_server import LiveServer


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "onnx_serving.smoke", "--timeout", "20", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_smoke_passes_for_every_served_model(server: LiveServer) -> None:
    completed = smoke("--url", server.url)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for model in ("identity", "lookup", "mlp"):
        assert model in completed.stdout


def test_smoke_fails_for_a_model_the_server_does_not_serve(server: LiveServer) -> None:
    completed = smoke("--url", server.url, "--model", "absent")
    assert completed.returncode != 0
    assert "absent" in completed.stdout + completed.stderr
