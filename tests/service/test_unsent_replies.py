"""A reply that never reached its client is logged as what happened (499), never as 200: in
the inference log (PostgreSQL 15) as in /metrics (tests/service/test_connection_clocks.py).

Dynamic batching with a long MAX_BATCH_DELAY_MS holds a lone request in the server, so the
client hangs up, deterministically, before its reply is written."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson

from service.app import CLIENT_GONE, CLIENT_GONE_ERROR
from tests.service.live_server import running_server
from tests.service.postgres import PostgresCluster
from tests.service.test_http_limits import GENEROUS_S
from tests.service.test_inference_log import cluster, wait_until, written

__all__ = ["cluster"]  # the module-scoped PostgreSQL fixture, shared with the log's tests

LOOKUP = "/v2/models/lookup/infer"


def test_a_reply_the_client_never_got_is_logged_as_499(
    cluster: PostgresCluster, model_repository: Path, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database())
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "PREDICTION_LOG_URL": url,
        "MAX_BATCH_SIZE": "8",
        "MAX_BATCH_DELAY_MS": "2500",
    }
    tensor = {"name": "index", "shape": [1], "datatype": "INT64", "data": [1]}
    body = orjson.dumps({"id": "gone", "inputs": [tensor]})
    request = (
        f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with running_server(env, tmp_path / "server.log") as server:
        wait_until(server, "connected", lambda: server.metric("prediction_log_connected") == 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S) as sock:
            sock.sendall(request)
            server.wait_for_metric("inference_requests_in_flight", 1)
        # hung up while the request waits for its batch
        wait_until(server, "1 row written", lambda: written(server) == 1)
        assert server.metric("inference_requests_total", 'model="lookup",status="200"') == 0
    rows = cluster.query(url, "SELECT request_id, model, status, error FROM inference_log")
    assert rows == [
        {"request_id": "gone", "model": "lookup", "status": CLIENT_GONE, "error": CLIENT_GONE_ERROR}
    ]
