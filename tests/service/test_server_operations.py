"""Operations: overload (503), stalled bodies (408), graceful SIGTERM/SIGINT under load,
metrics, health check, JSON logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from service.metrics import UNKNOWN_MODEL
from tests.service.live_server import (
    REPO,
    HeldRequest,
    LiveServer,
    free_port,
    running_server,
    spawn,
    wait_ready,
)

MLP = "/v2/models/mlp/infer"
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [4, 256], "datatype": "FP32", "data": [0.5] * 1024}]}
)


@pytest.fixture(scope="module")
def strict_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One request in flight at most; JSON-lines logs."""
    log = tmp_path_factory.mktemp("logs") / "strict.log"
    env = {"MODEL_REPOSITORY": str(model_repository), "MAX_INFLIGHT": "1", "LOG_FORMAT": "json"}
    with running_server(env, log) as live:
        yield live


def test_overload_answers_503_with_retry_after(strict_server: LiveServer) -> None:
    held = HeldRequest(strict_server, MLP, BODY)
    strict_server.wait_for_metric("inference_requests_in_flight", 1)
    refused = httpx.post(f"{strict_server.base}{MLP}", content=BODY)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "MAX_INFLIGHT=1" in refused.json()["error"]
    status, _, payload = held.finish()
    assert status == 200, payload
    # The slot is free again.
    assert httpx.post(f"{strict_server.base}{MLP}", content=BODY).status_code == 200
    assert strict_server.metric("inference_requests_total", 'model="mlp",status="503"') == 1


def test_health_endpoints_are_not_limited_by_max_inflight(strict_server: LiveServer) -> None:
    held = HeldRequest(strict_server, MLP, BODY)
    strict_server.wait_for_metric("inference_requests_in_flight", 1)
    assert httpx.get(f"{strict_server.base}/v2/health/ready").status_code == 200
    assert held.finish()[0] == 200


def test_logs_are_json_lines(strict_server: LiveServer) -> None:
    lines = [line for line in strict_server.log().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]
    assert any("loaded model mlp" in record["message"] for record in records)
    assert {"time", "level", "logger", "message"} <= set(records[0])


def test_healthcheck_exit_codes(server: LiveServer) -> None:
    def healthcheck(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        command = [sys.executable, "-m", "service.healthcheck"]
        return subprocess.run(command, cwd=REPO, env=env, timeout=30, check=False).returncode

    assert healthcheck(server.port) == 0
    assert healthcheck(free_port()) == 1


def test_healthcheck_in_process(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from service import healthcheck

    for port, code in ((str(server.port), 0), (str(free_port()), 1), ("http", 1)):
        monkeypatch.setenv("PORT", port)
        assert healthcheck.main() == code, port


def test_metrics_count_requests_latency_and_batches(server: LiveServer) -> None:
    before = server.metric("inference_requests_total", 'model="mlp",status="200"')
    rows_before = server.metric("inference_batch_rows_sum", 'model="mlp"')
    for _ in range(3):
        assert httpx.post(f"{server.base}{MLP}", content=BODY).status_code == 200
    httpx.post(f"{server.base}/v2/models/nope/infer", content=BODY)
    text = httpx.get(f"{server.base}/metrics").text
    assert server.metric("inference_requests_total", 'model="mlp",status="200"') == before + 3
    assert server.metric("inference_batch_rows_sum", 'model="mlp"') == rows_before + 12
    assert server.metric("inference_requests_total", f'model="{UNKNOWN_MODEL}",status="404"') >= 1
    assert 'inference_request_duration_seconds_count{model="mlp"}' in text
    assert "inference_requests_in_flight 0.0" in text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_during_load_finishes_in_flight_requests(
    model_repository: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGINT (Ctrl-C, and watchfiles' reload in the dev image) is as graceful as SIGTERM."""
    process, port = spawn({"MODEL_REPOSITORY": str(model_repository)}, tmp_path / "log")
    server = LiveServer(process, port, tmp_path / "log")
    try:
        wait_ready(server)
        # Requests admitted and mid-body when the signal arrives: deterministic in-flight work.
        held = [HeldRequest(server, MLP, BODY) for _ in range(6)]
        server.wait_for_metric("inference_requests_in_flight", 6)
        process.send_signal(signum)
        results = [request.finish() for request in held]
        assert [status for status, _, _ in results] == [200] * 6
        assert all(len(orjson.loads(body)["outputs"]) == 2 for _, _, body in results)
        assert process.wait(timeout=60) == 0
        assert "stopped" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_stalled_body_gets_408_and_frees_its_slot(model_repository: Path, tmp_path: Path) -> None:
    """A client that stops sending mid-body cannot hold an in-flight slot for ever."""
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "MAX_INFLIGHT": "1",
        "BODY_TIMEOUT_S": "0.5",
    }
    with running_server(env, tmp_path / "log") as server:
        stalled = HeldRequest(server, MLP, BODY)  # never sends the second half
        status, _, payload = stalled.response()
        assert status == 408, payload
        assert "BODY_TIMEOUT_S=0.5" in orjson.loads(payload)["error"]
        assert server.metric("inference_requests_total", 'model="mlp",status="408"') == 1
        assert httpx.post(f"{server.base}{MLP}", content=BODY).status_code == 200
        assert server.metric("inference_requests_in_flight") == 0


def test_client_hanging_up_mid_body_is_not_a_server_fault(server: LiveServer) -> None:
    counted = 'model="mlp",status="400"'
    before = server.metric("inference_requests_total", counted)
    held = HeldRequest(server, MLP, BODY)
    server.wait_for_metric("inference_requests_in_flight", 1)
    held.abort()
    server.wait_for_metric("inference_requests_total", before + 1, counted)
    assert server.metric("inference_requests_in_flight") == 0
    assert "Traceback" not in server.log()
    assert httpx.post(f"{server.base}{MLP}", content=BODY).status_code == 200
