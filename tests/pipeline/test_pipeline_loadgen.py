"""`benchmark`'s load command, run for real against a real server on 127.0.0.1.

The Dagger plan executes `commands.loadgen_command(...)` in the dev image against the served
image; here the very same command line runs against `python -m service` on loopback.
Correctness only (every request answered, failures reported); no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from onnx_serving import commands, loadgen
from tests.service.live_server import LiveServer, running_server

from .plan import REPO

MAX_BODY_BYTES = 64 * 1024  # a 100-row JSON request (~77 KB) is over it, 4 rows are not


@pytest.fixture(scope="module")
def bundled_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The tests' default MLP (`mlp`, input FP32 [N, 256]), bodies limited to 64 KiB."""
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


class _RecordingServer(BaseHTTPRequestHandler):
    """Answers a one-input model's metadata and every inference; keeps what was POSTed."""

    METADATA: ClassVar = {
        "name": "m",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    }
    posted: ClassVar[list[tuple[str, str | None, dict[str, object]]]] = []

    def do_GET(self) -> None:
        self._answer(self.METADATA)

    def do_POST(self) -> None:
        if self.path == "/v2/repository/index":
            self._answer([{"name": "m"}])
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posted.append((self.path, self.headers["Content-Type"], body))
        self._answer({"outputs": []})

    def _answer(self, document: object) -> None:
        data = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[str]:
    """A _RecordingServer on 127.0.0.1: its host:port."""
    _RecordingServer.posted.clear()  # pytest may run twice in one process (mutmut does)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _posted_shapes() -> set[tuple[str, str | None, str, tuple[int, ...]]]:
    return {
        (path, content_type, tensor["name"], tuple(tensor["shape"]))
        for path, content_type, body in _RecordingServer.posted
        for tensor in body["inputs"]  # type: ignore[attr-defined]
    }


def test_loadgen_posts_json_requests_of_the_batch_size(recording_server: str) -> None:
    tally = loadgen.run(recording_server, "m", requests=3, concurrency=2, batch=5)
    assert len(tally.latencies) == 3 and tally.errors == []
    assert len(_RecordingServer.posted) == 3
    assert _posted_shapes() == {("/v2/models/m/infer", "application/json", "x", (5, 2))}


def test_loadgen_defaults_to_2000_single_row_requests_on_8_connections(
    recording_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert loadgen.main(["--url", recording_server]) == 0  # the first served model
    assert len(_RecordingServer.posted) == 2000
    assert _posted_shapes() == {("/v2/models/m/infer", "application/json", "x", (1, 2))}
    assert capsys.readouterr().out.startswith("requests ok=2000 failed=0 concurrency=8\n")


def test_report_gives_rates_and_percentiles_in_milliseconds() -> None:
    latencies = [ms / 1000 for ms in range(100, 0, -1)]  # 100 ms down to 1 ms, unsorted
    tally = loadgen.Tally(latencies=latencies, errors=["HTTP 503: b''"])
    text = loadgen.report(tally, seconds=2.0, batch=4, concurrency=3)
    assert text.splitlines() == [
        "requests ok=100 failed=1 concurrency=3",
        "throughput 50.0 req/s, 200.0 rows/s (batch 4)",
        "latency p50 51.00 ms, p99 99.00 ms",
        "error: HTTP 503: b''",
    ]
