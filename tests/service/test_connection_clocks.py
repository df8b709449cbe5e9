"""The connection's clocks, each as its name says: the header clock runs while a request's
line and headers arrive, the keep-alive clock while a connection is idle between requests,
and no clock at all while the server itself works on a request. A reply that never reached
the client is counted as what happened (499), never as 200.

Dynamic batching with a long MAX_BATCH_DELAY_MS makes a lone request wait, deterministically,
far longer than HEADER_TIMEOUT_S: the server is working on it, the client is silent."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.service.live_server import LiveServer, running_server
from tests.service.test_http_limits import GENEROUS_S, read_response

LOOKUP = "/v2/models/lookup/infer"
HEADER_TIMEOUT_S = 0.5
BATCH_DELAY_MS = 2500  # a lone request waits this long: five header timeouts


def lookup_request(keep_alive: bool = True) -> bytes:
    tensor = {"name": "index", "shape": [1], "datatype": "INT64", "data": [1]}
    body = orjson.dumps({"inputs": [tensor]})
    connection = "keep-alive" if keep_alive else "close"
    head = (
        f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture(scope="module")
def slow_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("logs") / "clocks.log"
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "KEEP_ALIVE_TIMEOUT_S": "60",
        "MAX_BATCH_SIZE": "8",
        "MAX_BATCH_DELAY_MS": str(BATCH_DELAY_MS),
    }
    with running_server(env, log) as live:
        yield live


def test_a_request_the_server_works_on_longer_than_the_header_clock_is_answered(
    slow_server: LiveServer,
) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(lookup_request())
        status, _, body = read_response(sock)
        assert status == 200, body
        assert orjson.loads(body)["outputs"][0]["data"] == [2.0, 3.0]
        # ... and the connection is still usable afterwards.
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_an_idle_kept_alive_connection_outlives_the_header_clock(
    slow_server: LiveServer,
) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        time.sleep(HEADER_TIMEOUT_S * 3)  # idle: only KEEP_ALIVE_TIMEOUT_S (60 s) applies
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_a_reply_the_client_never_got_is_not_counted_as_200(slow_server: LiveServer) -> None:
    ok = 'model="lookup",status="200"'
    gone = 'model="lookup",status="499"'
    before_ok = slow_server.metric("inference_requests_total", ok)
    before_gone = slow_server.metric("inference_requests_total", gone)
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(lookup_request())
        slow_server.wait_for_metric("inference_requests_in_flight", 1)
    # hung up while the request waits for its batch
    slow_server.wait_for_metric("inference_requests_total", before_gone + 1, gone)
    assert slow_server.metric("inference_requests_total", ok) == before_ok
    assert "Traceback" not in slow_server.log()


@pytest.fixture(scope="module")
def short_clocks_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Every clock of the connection five times shorter than a lone request's batch wait."""
    log = tmp_path_factory.mktemp("logs") / "short-clocks.log"
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "BODY_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "KEEP_ALIVE_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "MAX_BATCH_SIZE": "8",
        "MAX_BATCH_DELAY_MS": str(BATCH_DELAY_MS),
    }
    with running_server(env, log) as live:
        yield live


def test_no_clock_runs_while_the_server_works(short_clocks_server: LiveServer) -> None:
    """Header, body and keep-alive clocks of half a second each; the request waits 2.5 s in
    the server, on a connection that was idle-kept-alive just before."""
    port = short_clocks_server.port
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200  # the keep-alive clock starts here ...
        sock.sendall(lookup_request())  # ... and stops here
        status, _, body = read_response(sock)
        assert status == 200, body
        assert orjson.loads(body)["outputs"][0]["data"] == [2.0, 3.0]
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert sock.recv(1) == b""  # then idle: closed by the keep-alive clock
