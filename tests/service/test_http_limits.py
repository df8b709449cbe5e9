"""The HTTP layer against hostile and unusual clients: header size and time limits, idle
connections, deep JSON, non-finite numbers, empty output lists, compressed bodies, and the
rule that every answer the server gives, from any layer, is ``{"error": ...}`` JSON.

Nothing here measures time: a limit is shown by what the server does (431, 408, a closed
connection), waited for with generous socket timeouts."""

from __future__ import annotations

import asyncio
import gzip
import select
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from service.encoding import decode_body, response_coding
from service.limits import read_body
from tests.service.live_server import LiveServer, running_server
from tests.service.model_factory import COLUMNS, ONNX_TYPES

MLP = "/v2/models/mlp/infer"
IDENTITY = "/v2/models/identity/infer"
ROW = [0.25] * 256
GENEROUS_S = 60.0  # how long a test waits for the server to act; never reached when it works


def mlp_body(**fields: object) -> bytes:
    tensor = {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": ROW}
    return orjson.dumps({"inputs": [tensor], **fields})


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS_S) as sock:
        sock.sendall(raw)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (Content-Length framed): its status, headers and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, body


def send_until_answered(
    sock: socket.socket, first: bytes, more: bytes, limit: int
) -> tuple[int, tuple[int, dict[str, str], bytes] | None]:
    """Send `first`, then `more` again and again (up to `limit` bytes in all) for as long as
    the server reads without answering; (bytes sent, its answer or None if it hung up)."""
    sock.sendall(first)
    sent = len(first)
    while sent < limit:
        readable, writable, _ = select.select([sock], [sock], [], GENEROUS_S)
        if readable:
            break
        if writable:
            try:
                sent += sock.send(more)
            except (BrokenPipeError, ConnectionResetError):
                return sent, None
    try:
        return sent, read_response(sock)
    except ConnectionResetError:
        return sent, None


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (EOF or reset)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["content-type"] == "application/json", headers
    message = orjson.loads(body)["error"]
    assert isinstance(message, str) and message
    return message


@pytest.fixture(scope="module")
def quick_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Short header and idle limits, so that the tests see them act."""
    log = tmp_path_factory.mktemp("logs") / "quick.log"
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "HEADER_TIMEOUT_S": "1",
        "KEEP_ALIVE_TIMEOUT_S": "1",
        "MAX_HEADER_BYTES": "4096",
        "MAX_BODY_BYTES": str(1 << 20),
    }
    with running_server(env, log) as live:
        yield live


# ---- 1. header size ------------------------------------------------------------------------


def test_huge_header_gets_431_without_being_read_whole(server: LiveServer) -> None:
    """A 64 MB header would be buffered whole by the HTTP parser: the server stops at
    MAX_HEADER_BYTES (64 KiB by default), answers 431 and closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S) as sock:
        first = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX: "
        sent, answer = send_until_answered(sock, first, b"a" * 65536, 64 << 20)
        assert answer is not None, "hung up without an answer"
        message = assert_json_error(*answer, 431)
        assert closed_by_server(sock)
    assert "MAX_HEADER_BYTES=65536" in message
    assert sent < 64 << 20
    assert httpx.get(f"{server.base}/v2/health/live").status_code == 200


def test_many_headers_adding_up_over_the_limit_get_431(quick_server: LiveServer) -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(60))
    raw = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    message = assert_json_error(*exchange(quick_server.port, raw), 431)
    assert "MAX_HEADER_BYTES=4096" in message


def test_headers_under_the_limit_are_served(quick_server: LiveServer) -> None:
    response = httpx.get(f"{quick_server.base}/v2/health/live", headers={"X-Pad": "v" * 3000})
    assert response.status_code == 200


def test_big_bodies_do_not_count_as_header_bytes(quick_server: LiveServer) -> None:
    """Chunks that carry a head's end and a body (or several whole requests) are not header
    bytes: large requests, kept alive or pipelined, all pass a 4 KiB header limit."""
    tensor = {"name": "input", "shape": [64, 256], "datatype": "FP32", "data": ROW * 64}
    body = orjson.dumps({"inputs": [tensor]})
    with httpx.Client(base_url=quick_server.base) as client:
        for _ in range(3):
            assert client.post(MLP, content=body).status_code == 200
    request = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
        MLP.encode(),
        len(body),
    )
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall((request + body) * 3)  # pipelined
        assert [read_response(sock)[0] for _ in range(3)] == [200] * 3


# ---- 2. header read time and idle connections -----------------------------------------------


def test_silent_connection_is_closed(quick_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S) as sock:
        assert sock.recv(1) == b""  # closed by the server, without a word


def test_half_a_request_line_gets_408_then_closed(quick_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        status, headers, body = read_response(sock)
        message = assert_json_error(status, headers, body, 408)
        assert "HEADER_TIMEOUT_S=1" in message
        assert closed_by_server(sock)


def test_headers_trickled_in_slowly_are_cut_off(quick_server: LiveServer) -> None:
    """Slowloris: a byte now and then resets no clock; the headers must all be in in time."""
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        for _ in range(int(GENEROUS_S * 20)):
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
            sock.sendall(b"X")
        status, headers, body = read_response(sock)
        assert_json_error(status, headers, body, 408)
        assert closed_by_server(sock)


def test_idle_kept_alive_connection_is_closed(quick_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 200
        assert sock.recv(1) == b""  # the keep-alive timeout closed it


def test_hundreds_of_silent_connections_are_all_closed(quick_server: LiveServer) -> None:
    sockets = [
        socket.create_connection(("127.0.0.1", quick_server.port), timeout=GENEROUS_S)
        for _ in range(200)
    ]
    try:
        for index, sock in enumerate(sockets):
            if index % 2:
                sock.sendall(b"GET / HTTP/1.1\r\n")  # half a request
        assert all(closed_by_server(sock) for sock in sockets)
        assert httpx.get(f"{quick_server.base}/v2/health/ready").status_code == 200
    finally:
        for sock in sockets:
            sock.close()


def test_kept_alive_requests_within_the_limits_are_served(quick_server: LiveServer) -> None:
    with httpx.Client(base_url=quick_server.base) as client:
        for _ in range(3):
            assert client.post(MLP, content=mlp_body()).status_code == 200


# ---- 3. deep JSON --------------------------------------------------------------------------


DEEP = "deeply nested"  # stands for 1,000 nested lists in the documents below
TENSOR = {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": ROW}
DEEP_DOCUMENTS = {
    "id": {"id": DEEP, "inputs": [TENSOR]},
    "name": {"inputs": [{**TENSOR, "name": DEEP}]},
    "datatype": {"inputs": [{**TENSOR, "datatype": DEEP}]},
    "shape": {"inputs": [{**TENSOR, "shape": DEEP}]},
    "data": {"inputs": [{**TENSOR, "data": DEEP}]},
    "parameters": {"parameters": {"binary_data_output": DEEP}, "inputs": [TENSOR]},
    "outputs": {"inputs": [TENSOR], "outputs": DEEP},
    "output-name": {"inputs": [TENSOR], "outputs": [{"name": DEEP}]},
}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("field", list(DEEP_DOCUMENTS))
def test_deeply_nested_values_get_400_and_keep_the_connection(
    server: LiveServer, field: str
) -> None:
    """A 2 KB body whose echoed value is nested 1,000 deep made repr() recurse too deep."""
    body = orjson.dumps(DEEP_DOCUMENTS[field]).replace(orjson.dumps(DEEP), nested(1000))
    with httpx.Client(base_url=server.base) as client:
        refused = client.post(MLP, content=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]
        # The same kept-alive connection goes on serving.
        assert client.post(MLP, content=mlp_body()).status_code == 200
    assert "RecursionError" not in server.log()


def test_deeper_than_the_json_parser_allows_gets_400(server: LiveServer) -> None:
    response = httpx.post(f"{server.base}{MLP}", content=b'{"id": ' + nested(5000) + b"}")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


# ---- 4. non-finite numbers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("FP32", 1e39), ("FP32", -3.5e38), ("FP16", 70000.0), ("FP16", -65520.0)],
)
def test_json_float_beyond_the_datatype_range_gets_400(
    server: LiveServer, datatype: str, value: float
) -> None:
    tensor = {"name": f"in_{datatype}", "shape": [1, 2], "datatype": datatype, "data": [1, value]}
    body = _with_other_inputs(orjson.dumps({"inputs": [tensor]}))
    response = httpx.post(f"{server.base}{IDENTITY}", content=body)
    assert response.status_code == 400
    assert f"out of range for {datatype}" in response.json()["error"]


def test_largest_finite_values_are_accepted(server: LiveServer) -> None:
    tensor = {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [3.4e38] * 256}
    response = httpx.post(f"{server.base}{MLP}", content=orjson.dumps({"inputs": [tensor]}))
    assert response.status_code == 200


def _with_other_inputs(body: bytes, rows: int = 1) -> bytes:
    """The identity model wants every input: add the missing ones, as zeros."""
    document = orjson.loads(body)
    given = {tensor["name"] for tensor in document["inputs"]}
    for datatype in ONNX_TYPES:
        if f"in_{datatype}" not in given:
            zero: object = {"BOOL": False, "BYTES": ""}.get(datatype, 0)
            shape = [rows, COLUMNS]
            tensor = {"name": f"in_{datatype}", "shape": shape, "datatype": datatype}
            document["inputs"].append({**tensor, "data": [zero] * rows * COLUMNS})
    return orjson.dumps(document)


def test_non_finite_outputs_are_named_not_null_and_come_back(server: LiveServer) -> None:
    """JSON cannot write NaN or infinity as numbers, and the protocol's schema has no null:
    they are sent as the strings "NaN", "Infinity", "-Infinity" (which numpy and
    tritonclient read back as floats), and accepted as such in JSON inputs."""
    values = np.array([[np.nan, np.inf], [-np.inf, 1.5]], dtype=np.float32)
    binary = {"binary_data_size": values.nbytes}
    tensor = {"name": "in_FP32", "shape": [2, 2], "datatype": "FP32", "parameters": binary}
    wanted = [{"name": "out_FP32", "parameters": {"binary_data": False}}]
    head = _with_other_inputs(orjson.dumps({"inputs": [tensor], "outputs": wanted}), rows=2)
    response = httpx.post(
        f"{server.base}{IDENTITY}",
        content=head + values.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    assert b"null" not in response.content
    data = response.json()["outputs"][0]["data"]
    assert data == ["NaN", "Infinity", "-Infinity", 1.5]
    np.testing.assert_array_equal(np.array(data, dtype=np.float32).reshape(2, 2), values)
    # ...and the same strings are accepted back as JSON input.
    as_json = {"name": "in_FP32", "shape": [2, 2], "datatype": "FP32", "data": data}
    again_body = _with_other_inputs(orjson.dumps({"inputs": [as_json], "outputs": wanted}), 2)
    again = httpx.post(f"{server.base}{IDENTITY}", content=again_body)
    assert again.status_code == 200, again.text
    assert again.json()["outputs"][0]["data"] == data


@pytest.mark.parametrize("text", ["1.5", "nan", "inf", ""])
def test_other_strings_in_float_data_are_still_refused(server: LiveServer, text: str) -> None:
    tensor = {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [text, *ROW[1:]]}
    response = httpx.post(f"{server.base}{MLP}", content=orjson.dumps({"inputs": [tensor]}))
    assert response.status_code == 400


# ---- 5. an empty output list -----------------------------------------------------------------


def test_empty_outputs_list_returns_all_outputs(server: LiveServer) -> None:
    response = httpx.post(f"{server.base}{MLP}", content=mlp_body(outputs=[]))
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["logits", "label"]


# ---- 6. compressed bodies --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_compression_both_ways(
    server: LiveServer, algorithm: str, binary: bool
) -> None:
    client = triton.InferenceServerClient(server.url)
    batch = np.random.default_rng(3).standard_normal((3, 256)).astype(np.float32)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    plain = client.infer("mlp", [tensor])
    compressed = client.infer(
        "mlp",
        [tensor],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    for name in ("logits", "label"):
        np.testing.assert_array_equal(compressed.as_numpy(name), plain.as_numpy(name))


def test_response_is_compressed_only_when_asked(server: LiveServer) -> None:
    asked = httpx.post(
        f"{server.base}{MLP}", content=mlp_body(), headers={"Accept-Encoding": "gzip"}
    )
    assert asked.headers["content-encoding"] == "gzip"
    assert asked.json()["outputs"][1]["name"] == "label"  # httpx inflates it
    plain = httpx.post(
        f"{server.base}{MLP}", content=mlp_body(), headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers


def test_raw_deflate_body_is_accepted(server: LiveServer) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(mlp_body()) + compressor.flush()
    response = httpx.post(
        f"{server.base}{MLP}", content=body, headers={"Content-Encoding": "deflate"}
    )
    assert response.status_code == 200, response.text


def test_raw_deflate_that_passes_the_zlib_header_checksum_stays_raw() -> None:
    # A 23-byte stored block starts 01 17: 0x0117 is a multiple of 31, like a zlib header's
    # check bits, but its low nibble is not 8 (deflate): it must still be read as raw.
    payload = b"x" * 23
    compressor = zlib.compressobj(0, zlib.DEFLATED, -15)
    body = compressor.compress(payload) + compressor.flush()
    assert int.from_bytes(body[:2]) % 31 == 0 and body[0] & 0x0F != 8
    assert decode_body(body, "deflate", limit=1024) == payload


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("gzip", "gzip"),
        ("GZIP ; Q=1", "gzip"),
        ("deflate;q=0.5, gzip;q=0", "deflate"),
        ("gzip;q=0", None),
        ("gzip;q=0=1", None),  # a malformed quality refuses the coding
        ("br, identity", None),
        ("", None),
    ],
)
def test_the_response_coding_is_one_the_client_accepts(
    accept_encoding: str, coding: str | None
) -> None:
    assert response_coding(accept_encoding) == coding


def test_a_body_message_without_more_body_is_the_last() -> None:
    # ASGI: `more_body` defaults to False; a server may leave it out of the last message.
    messages: Iterator[dict[str, Any]] = iter(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    body = asyncio.run(read_body(receive, None, limit=1024, timeout_s=5))
    assert body == b"abcd"


def test_unknown_content_encoding_gets_415(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.base}{MLP}", content=mlp_body(), headers={"Content-Encoding": "br"}
    )
    assert response.status_code == 415
    assert "'br'" in response.json()["error"]


def test_corrupt_gzip_body_gets_400(server: LiveServer) -> None:
    body = gzip.compress(mlp_body())[:-12]
    response = httpx.post(f"{server.base}{MLP}", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.json()["error"]


def test_compressed_body_inflating_past_the_limit_gets_413(server: LiveServer) -> None:
    """A few KB of gzip that would inflate to 16 MiB stops at MAX_BODY_BYTES (1 MiB here)."""
    bomb = gzip.compress(b" " * (16 << 20))
    assert len(bomb) < 100_000
    response = httpx.post(f"{server.base}{MLP}", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.json()["error"]


# ---- 7. JSON errors from every layer, and clear messages --------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GARBAGE\x00 / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST /v2/models/mlp/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        (b"GET /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        (b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    ],
    ids=["bad-method", "bad-version", "bad-length", "bad-chunk", "404", "405", "404-infer"],
)
def test_every_layer_answers_json_errors(server: LiveServer, raw: bytes, expected: int) -> None:
    assert_json_error(*exchange(server.port, raw), expected)


def test_negative_shape_says_what_is_wrong(server: LiveServer) -> None:
    tensor = {"name": "input", "shape": [-1, 256], "datatype": "FP32", "data": ROW}
    response = httpx.post(f"{server.base}{MLP}", content=orjson.dumps({"inputs": [tensor]}))
    assert response.status_code == 400
    message = response.json()["error"]
    assert "not a list of sizes" in message
    assert "-1: any size" in message
