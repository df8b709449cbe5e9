"""WORKERS=N: N server processes on one port, one set of metrics, one graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from service.cpus import usable_cpu_count
from service.server import intra_op_threads
from service.settings import Settings
from tests.service.live_server import (
    REPO,
    HeldRequest,
    LiveServer,
    free_port,
    running_server,
    server_env,
    spawn,
    wait_ready,
)
from tests.service.model_factory import DEFAULT_MODEL

MLP = "/v2/models/mlp/infer"
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 256], "datatype": "FP32", "data": [0.5] * 512}]}
)
POLLS = 1200
POLL_S = 0.05
COUNTED = 'model="mlp",status="200"'


def workers_of(server: LiveServer) -> set[int]:
    """The supervisor's child processes (the workers), from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == server.process.pid:  # field 4: the parent's pid
            children.add(int(stat.parent.name))
    return children


def wait_for_workers(
    server: LiveServer, count: int, other_than: frozenset[int] = frozenset()
) -> set[int]:
    for _ in range(POLLS):
        pids = workers_of(server)
        if len(pids) == count and not pids & other_than:
            return pids
        time.sleep(POLL_S)
    raise AssertionError(f"never {count} workers (have {workers_of(server)}):\n{server.log()}")


def wait_until_all_serve(server: LiveServer) -> None:
    """The supervisor says so once every worker accepts connections."""
    for _ in range(POLLS):
        if "workers are serving" in server.log():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"the workers never all served:\n{server.log()}")


@pytest.fixture(scope="module")
def two_workers(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("logs") / "workers.log"
    env = {"MODEL_REPOSITORY": str(model_repository), "WORKERS": "2"}
    with running_server(env, log) as live:
        wait_until_all_serve(live)
        yield live


def test_workers_share_the_port_and_add_up_their_metrics(two_workers: LiveServer) -> None:
    assert len(workers_of(two_workers)) == 2
    before = two_workers.metric("inference_requests_total", COUNTED)
    for _ in range(20):  # a new connection each: the kernel spreads them over the workers
        assert httpx.post(f"{two_workers.base}{MLP}", content=BODY).status_code == 200
    # Whichever worker answers /metrics, it counts every worker's requests.
    for _ in range(5):
        assert two_workers.metric("inference_requests_total", COUNTED) == before + 20
    rows = two_workers.metric("inference_batch_rows_sum", 'model="mlp"')
    assert rows >= 40


def test_a_killed_worker_is_replaced_and_its_counts_survive(two_workers: LiveServer) -> None:
    for _ in range(4):
        assert httpx.post(f"{two_workers.base}{MLP}", content=BODY).status_code == 200
    before = two_workers.metric("inference_requests_total", COUNTED)
    pids = workers_of(two_workers)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for_workers(two_workers, 2, other_than=frozenset({victim}))
    assert pids - {victim} <= replaced
    two_workers.wait_for_metric("inference_requests_total", before, COUNTED)
    assert httpx.get(f"{two_workers.base}/v2/health/ready").status_code == 200
    assert httpx.post(f"{two_workers.base}{MLP}", content=BODY).status_code == 200
    assert two_workers.metric("inference_requests_total", COUNTED) >= before + 1
    assert "starting it again" in two_workers.log()


def test_a_worker_killed_before_it_serves_is_replaced(
    model_repository: Path, tmp_path: Path
) -> None:
    """SIGKILL (as the OOM killer sends) while a worker still loads: it is started again, as
    one killed while serving would be, and the server keeps serving."""
    env = {"MODEL_REPOSITORY": str(model_repository), "WORKERS": "2"}
    process, port = spawn(env, tmp_path / "log")
    server = LiveServer(process, port, tmp_path / "log")
    try:
        victim = min(wait_for_workers(server, 2))  # started, still importing and loading
        os.kill(victim, signal.SIGKILL)
        wait_ready(server)
        wait_for_workers(server, 2, other_than=frozenset({victim}))
        wait_until_all_serve(server)
        assert f"died with -{signal.SIGKILL.value} before serving; starting it again" in (
            server.log()
        )
        for _ in range(4):  # new connections: both workers get some
            assert httpx.post(f"{server.base}{MLP}", content=BODY).status_code == 200
        assert process.poll() is None
    finally:
        assert server.stop() == 0


def test_sigterm_drains_every_worker(model_repository: Path, tmp_path: Path) -> None:
    env = {"MODEL_REPOSITORY": str(model_repository), "WORKERS": "2"}
    process, port = spawn(env, tmp_path / "log")
    server = LiveServer(process, port, tmp_path / "log")
    try:
        wait_ready(server)
        wait_until_all_serve(server)
        # Admitted, mid-body, on whichever workers accepted them.
        held = [HeldRequest(server, MLP, BODY) for _ in range(6)]
        server.wait_for_metric("inference_requests_in_flight", 6)
        process.send_signal(signal.SIGTERM)
        results = [request.finish() for request in held]
        assert [status for status, _, _ in results] == [200] * 6
        assert process.wait(timeout=60) == 0
        assert server.log().count("INFO service.app: stopped") == 2
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_a_bad_model_stops_every_worker(tmp_path: Path) -> None:
    corrupt = tmp_path / "repo" / "corrupt" / "1" / "model.onnx"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    env = {"MODEL_REPOSITORY": str(tmp_path / "repo"), "WORKERS": "2", "PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert str(corrupt) in result.stderr
    assert "before serving; stopping" in result.stderr


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_worker_gets_its_share_of_the_cpus(workers: int) -> None:
    settings = Settings(workers=workers)
    assert intra_op_threads(settings) == max(1, usable_cpu_count() // workers)
    assert intra_op_threads(Settings(workers=workers, intra_op_threads=3)) == 3
