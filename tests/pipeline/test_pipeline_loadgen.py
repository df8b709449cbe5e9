"""`benchmark`'s load command, run for real against a real server on 127.0.0.1.

The Dagger plan executes `commands.loadgen_command(...)` in the dev image against the served
image; here the very same command line runs against `python -m service` on loopback.
Correctness only (every request answered, failures reported); no timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from onnx_serving import commands
from tests.service.live_server import LiveServer, running_server

from .plan import REPO

MAX_BODY_BYTES = 64 * 1024  # a 100-row JSON request (~77 KB) is over it, 4 rows are not


@pytest.fixture(scope="module")
def bundled_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The bundled models/ repository (model `mlp`), bodies limited to 64 KiB."""
    env = {"MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with running_server(env, tmp_path_factory.mktemp("loadgen") / "server.log") as live:
        yield live


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_loadgen_reports_every_request_answered(bundled_model_server: LiveServer) -> None:
    command = commands.loadgen_command(
        bundled_model_server.url, requests=120, concurrency=3, batch=4, python=sys.executable
    )
    done = _run(command)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "requests ok=120 failed=0 concurrency=3"
    assert lines[1].startswith("throughput ") and "(batch 4)" in lines[1]
    assert lines[2].startswith("latency p50 ")


def test_loadgen_fails_loudly_on_a_missing_model(bundled_model_server: LiveServer) -> None:
    command = commands.loadgen_command(
        bundled_model_server.url, model="no-such-model", requests=5, python=sys.executable
    )
    done = _run(command)
    assert done.returncode != 0
    assert "'no-such-model'" in done.stderr


def test_loadgen_counts_rejected_requests(bundled_model_server: LiveServer) -> None:
    # A body over the server's limit is rejected (413): each rejected request is a failure,
    # and any failure makes the run exit non-zero.
    command = commands.loadgen_command(
        bundled_model_server.url, requests=3, concurrency=1, batch=100, python=sys.executable
    )
    done = _run(command)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "requests ok=0 failed=3" in done.stdout
    assert "error: HTTP 4" in done.stdout


def test_loadgen_rejects_a_zero_count() -> None:
    done = _run([sys.executable, "-m", "onnx_serving.loadgen", "--url", "x:1", "--requests", "0"])
    assert done.returncode == 2
    assert "must be >= 1, got 0" in done.stderr
