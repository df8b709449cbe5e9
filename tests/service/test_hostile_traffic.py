"""What a hostile-traffic audit found, each shown against a real server: a model named like the
unknown-model metrics label, client text echoed at any length in errors, HTTP/1.0 keep-alive,
and gzip bodies of several members (or named ``x-gzip``)."""

from __future__ import annotations

import gzip
import shutil
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from service.encoding import MAX_GZIP_MEMBERS
from service.errors import SHOWN_CHARS
from service.metrics import UNKNOWN_MODEL
from tests.service.conftest import TEST_MAX_BODY_BYTES
from tests.service.live_server import LiveServer, running_server
from tests.service.model_factory import make_repository
from tests.service.test_http_limits import (
    GENEROUS_S,
    assert_json_error,
    closed_by_server,
    mlp_body,
    read_response,
)

MLP = "/v2/models/mlp/infer"
LONG = 60_000  # a name this long still fits in the 64 KiB request line the server takes
SMALL_BODY = 1024  # what an error body may take, whatever the client sent


# ---- 1. the unknown-model label --------------------------------------------------------------


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "two-workers"])
def lookalike_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server with a model named `_unknown` (the label junk names used to share)."""
    repository = make_repository(tmp_path_factory.mktemp("lookalike-repository"))
    shutil.copytree(repository / "mlp", repository / "_unknown")
    log = tmp_path_factory.mktemp("logs") / "lookalike.log"
    env = {"MODEL_REPOSITORY": str(repository), "WORKERS": request.param}
    with running_server(env, log) as live:
        yield live


def test_a_model_named_like_a_label_keeps_its_series_apart_from_unknown_models(
    lookalike_server: LiveServer,
) -> None:
    assert UNKNOWN_MODEL.strip("abcdefghijklmnopqrstuvwxyz") != ""  # no model can be named so
    base = lookalike_server.base
    for _ in range(3):
        served = httpx.post(f"{base}/v2/models/_unknown/infer", content=mlp_body())
        assert served.status_code == 200, served.text
    for name in ("nope", "_unknown2"):
        assert httpx.post(f"{base}/v2/models/{name}/infer", content=mlp_body()).status_code == 404
    requests = "inference_requests_total"
    assert lookalike_server.metric(requests, 'model="_unknown",status="200"') == 3
    assert lookalike_server.metric(requests, 'model="_unknown",status="404"') == 0
    assert lookalike_server.metric(requests, f'model="{UNKNOWN_MODEL}",status="404"') == 2
    assert lookalike_server.metric(requests, f'model="{UNKNOWN_MODEL}",status="200"') == 0
    assert lookalike_server.metric("inference_batch_rows_sum", 'model="_unknown"') == 3


# ---- 2. client text in error messages ----------------------------------------------------------


def assert_small_error(response: httpx.Response, status: int, length: int) -> str:
    assert response.status_code == status, response.text[:300]
    assert len(response.content) < SMALL_BODY, len(response.content)
    message = response.json()["error"]
    assert isinstance(message, str)
    assert f"... ({length} characters)" in message
    return message


@pytest.mark.parametrize("suffix", ["/infer", "", "/ready", "/config"])
def test_a_60_kb_model_name_gets_a_small_404(server: LiveServer, suffix: str) -> None:
    name = "m" * LONG
    method = "POST" if suffix == "/infer" else "GET"
    response = httpx.request(method, f"{server.base}/v2/models/{name}{suffix}", content=mlp_body())
    message = assert_small_error(response, 404, LONG)
    assert f"'{'m' * SHOWN_CHARS}... " in message


def test_a_60_kb_version_gets_a_small_404(server: LiveServer) -> None:
    version = "9" * LONG
    response = httpx.post(
        f"{server.base}/v2/models/mlp/versions/{version}/infer", content=mlp_body()
    )
    message = assert_small_error(response, 404, LONG)
    assert "of model 'mlp' (available: 1)" in message


@pytest.mark.parametrize(
    "document",
    [
        {
            "inputs": [
                {"name": "i" * LONG, "shape": [1, 256], "datatype": "FP32", "data": [0.0] * 256}
            ]
        },
        {"inputs": [{"name": "input", "shape": [1, 256], "datatype": "x" * LONG, "data": []}]},
        {"id": ["x" * LONG], "inputs": []},
        {
            "inputs": [
                {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.0] * 256}
            ],
            "outputs": [{"name": "o" * LONG}],
        },
    ],
    ids=["input-name", "datatype", "id", "output-name"],
)
def test_long_client_values_in_a_body_get_a_small_400(
    server: LiveServer, document: dict[str, object]
) -> None:
    response = httpx.post(f"{server.base}{MLP}", content=orjson.dumps(document))
    assert response.status_code == 400, response.text[:300]
    assert len(response.content) < SMALL_BODY, len(response.content)
    assert response.json()["error"]


# ---- 3. HTTP/1.0 keep-alive ----------------------------------------------------------------------


def http_1_0(path: str, body: bytes | None = None, keep_alive: bool = True) -> bytes:
    method = "GET" if body is None else "POST"
    head = f"{method} {path} HTTP/1.0\r\nHost: x\r\n"
    if keep_alive:
        head += "Connection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


def test_http_1_0_keep_alive_keeps_the_connection(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(http_1_0("/v2/health/live"))
        status, headers, body = read_response(sock)
        assert (status, orjson.loads(body)) == (200, {"live": True})
        assert headers["connection"].lower() == "keep-alive"
        sock.sendall(http_1_0(MLP, mlp_body()))  # the same connection
        status, headers, body = read_response(sock)
        assert status == 200, body
        assert headers["connection"].lower() == "keep-alive"
        assert [output["name"] for output in orjson.loads(body)["outputs"]] == ["logits", "label"]
        sock.sendall(http_1_0("/v2/health/live", keep_alive=False))  # ... until it says not
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers["connection"].lower() == "close"
        assert closed_by_server(sock)


def test_http_1_0_without_keep_alive_is_closed_after_the_reply(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(http_1_0("/v2/health/live", keep_alive=False))
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers["connection"].lower() == "close"
        assert sock.recv(1) == b""


def test_http_1_1_replies_promise_nothing_new(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200
        assert "connection" not in headers


# ---- 4. gzip members and x-gzip ----------------------------------------------------------------


def post_gzip(server: LiveServer, body: bytes, coding: str = "gzip") -> httpx.Response:
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
    return httpx.post(f"{server.base}{MLP}", content=body, headers=headers, timeout=GENEROUS_S)


def logits(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text[:300]
    return np.array(response.json()["outputs"][0]["data"])


def test_a_gzip_body_of_two_members_is_inflated_whole(server: LiveServer) -> None:
    document = mlp_body()
    half = len(document) // 2
    two = gzip.compress(document[:half]) + gzip.compress(document[half:])
    expected = logits(httpx.post(f"{server.base}{MLP}", content=document))
    np.testing.assert_array_equal(logits(post_gzip(server, two)), expected)


@pytest.mark.parametrize("coding", ["x-gzip", "X-Gzip"])
def test_x_gzip_is_gzip(server: LiveServer, coding: str) -> None:
    expected = logits(httpx.post(f"{server.base}{MLP}", content=mlp_body()))
    response = post_gzip(server, gzip.compress(mlp_body()), coding)
    np.testing.assert_array_equal(logits(response), expected)


def test_gzip_members_inflating_past_the_limit_together_get_413(server: LiveServer) -> None:
    """Each member inflates to less than MAX_BODY_BYTES; all of them, to far more."""
    member = gzip.compress(b" " * (TEST_MAX_BODY_BYTES // 2))
    response = post_gzip(server, member * 16)
    assert response.status_code == 413, response.text[:300]
    assert f"MAX_BODY_BYTES={TEST_MAX_BODY_BYTES}" in response.json()["error"]


def test_a_gzip_body_of_too_many_members_gets_400(server: LiveServer) -> None:
    empty = gzip.compress(b"")
    response = post_gzip(server, gzip.compress(mlp_body()) + empty * MAX_GZIP_MEMBERS)
    assert response.status_code == 400, response.text[:300]
    assert f"MAX_GZIP_MEMBERS={MAX_GZIP_MEMBERS}" in response.json()["error"]
    # ... one fewer is served.
    served = post_gzip(server, gzip.compress(mlp_body()) + empty * (MAX_GZIP_MEMBERS - 1))
    assert served.status_code == 200, served.text[:300]


@pytest.mark.parametrize(
    ("tail", "reason"),
    [(b"junk", "incorrect header check"), (gzip.compress(b"x")[:-3], "truncated")],
    ids=["junk", "truncated-member"],
)
def test_bytes_after_a_gzip_member_must_be_a_whole_member(
    server: LiveServer, tail: bytes, reason: str
) -> None:
    response = post_gzip(server, gzip.compress(mlp_body()) + tail)
    message = assert_json_error(response.status_code, dict(response.headers), response.content, 400)
    assert reason in message
