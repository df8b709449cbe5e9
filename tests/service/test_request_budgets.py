"""Every byte a client sends is budgeted: a request's memory is bounded whatever its encoding.

The budget (docs/LIMITS.md): a body of at most MAX_BODY_BYTES, inflated to at most
MAX_BODY_BYTES, decoding to tensors of at most 2 x MAX_BODY_BYTES, each checked before the
memory is taken; so one request grows the server by at most 4 x MAX_BODY_BYTES plus what its
model run and reply take. Peak memory is the kernel's high-water mark (VmHWM in
/proc/PID/status) of the server process, before and after the request."""

from __future__ import annotations

import gzip
import select
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper

from tests.service.live_server import LiveServer, running_server
from tests.service.model_factory import LOOKUP_TABLE, make_repository
from tests.service.test_http_limits import (
    GENEROUS_S,
    assert_json_error,
    read_response,
    send_until_answered,
)

MAX_BODY = 16 << 20
BUDGET = 4 * MAX_BODY  # the documented bound on one request's growth
MLP = "/v2/models/mlp/infer"
LOOKUP = "/v2/models/lookup/infer"
DEEP = "/v2/models/deep/infer"
# Health checks answered one after another while a body inflates: at most one when inflating
# is on the event loop, 25 to 70 on the development machine off it ...
HEALTH_CHECKS_DURING_INFLATION = 5
# ... and while a reply is compressed: on the event loop, only those answered while the model
# runs (about 10 on the development machine), off it, about 1000.
HEALTH_CHECKS_DURING_COMPRESSION = 100


def deep_model() -> onnx.ModelProto:
    """Input ``in`` FP32 with three variable dimensions, copied to ``out``."""
    shape = ["a", "b", "c"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["in"], ["out"])],
        "deep",
        [helper.make_tensor_value_info("in", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def tile_model() -> onnx.ModelProto:
    """``row`` FP32 [1, n] tiled ``repeats`` (INT64 [2]) times: a small request, a large reply."""
    graph = helper.make_graph(
        [helper.make_node("Tile", ["row", "repeats"], ["tiled"])],
        "tile",
        [
            helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, "n"]),
            helper.make_tensor_value_info("repeats", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("tiled", TensorProto.FLOAT, ["r", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repository = make_repository(tmp_path_factory.mktemp("budget-repository"))
    (repository / "deep" / "1").mkdir(parents=True)
    (repository / "deep" / "1" / "model.onnx").write_bytes(deep_model().SerializeToString())
    (repository / "tile" / "1").mkdir(parents=True)
    (repository / "tile" / "1" / "model.onnx").write_bytes(tile_model().SerializeToString())
    log = tmp_path_factory.mktemp("logs") / "budgets.log"
    env = {"MODEL_REPOSITORY": str(repository), "MAX_BODY_BYTES": str(MAX_BODY)}
    with running_server(env, log) as live:
        # Warm up: the first inference of each model allocates what every later one reuses.
        for _ in range(2):
            assert post(live, LOOKUP, zeros_request("index", "INT64", [4], 4)).status_code == 200
        yield live


def peak_rss(server: LiveServer) -> int:
    """The server process's high-water resident memory, in bytes."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def zeros_request(
    name: str, datatype: str, shape: list[int], zeros: int, rest: bytes = b""
) -> bytes:
    """A valid JSON request of `zeros` zeros, written without building a list of them."""
    data = b"0" + b",0" * (zeros - 1) if zeros else b""
    head = {"name": name, "datatype": datatype, "shape": shape}
    return b'{"inputs":[%s]%s}' % (orjson.dumps(head)[:-1] + b',"data":[' + data + b"]}", rest)


def post(server: LiveServer, path: str, body: bytes, gzipped: bool = False) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body, 1), "gzip"
    return httpx.post(f"{server.base}{path}", content=body, headers=headers, timeout=120)


def test_gzip_of_zeros_with_a_wrong_shape_is_refused_within_the_budget(
    budget_server: LiveServer,
) -> None:
    zeros = MAX_BODY // 2 - 64  # the inflated body is just under MAX_BODY_BYTES
    body = zeros_request("input", "FP32", [1, 256], zeros)
    assert len(body) <= MAX_BODY
    before = peak_rss(budget_server)
    response = post(budget_server, MLP, body, gzipped=True)
    assert response.status_code == 400, response.text[:300]
    assert "needs 256 elements" in response.json()["error"]
    assert peak_rss(budget_server) - before <= BUDGET


def test_gzip_of_zeros_decoding_past_the_budget_is_413_before_it_is_decoded(
    budget_server: LiveServer,
) -> None:
    zeros = MAX_BODY // 2 - 64  # INT64: 8 bytes per 2 bytes of text, 4 x MAX_BODY_BYTES
    body = zeros_request("index", "INT64", [zeros], zeros)
    before = peak_rss(budget_server)
    response = post(budget_server, LOOKUP, body, gzipped=True)
    assert response.status_code == 413, response.text[:300]
    assert "memory budget" in response.json()["error"]
    assert peak_rss(budget_server) - before <= BUDGET


def test_a_large_json_tensor_within_the_budget_is_served_exactly(
    budget_server: LiveServer,
) -> None:
    rows = MAX_BODY // 16  # 2 MB of INT64 zeros and ones, 8 MiB decoded
    binary_output = b',"outputs":[{"name":"row","parameters":{"binary_data":true}}]'
    body = zeros_request("index", "INT64", [rows], rows, binary_output)
    body = body.replace(b",0,0", b",0,1")  # 0, 0, 1, 0, 1, ...
    sent = np.array(orjson.loads(body)["inputs"][0]["data"])
    before = peak_rss(budget_server)
    response = post(budget_server, LOOKUP, body, gzipped=True)
    assert response.status_code == 200, response.text[:300]
    length = int(response.headers["inference-header-content-length"])
    rows_back = np.frombuffer(response.content[length:], dtype="<f4").reshape(-1, 2)
    assert np.array_equal(rows_back, LOOKUP_TABLE[sent])
    assert peak_rss(budget_server) - before <= BUDGET + 4 * rows_back.nbytes


@pytest.mark.parametrize("binary", [False, True])
def test_a_shape_past_int64_products_is_400_not_500(
    budget_server: LiveServer, binary: bool
) -> None:
    """Element count 0, yet the sizes multiply past what numpy can describe."""
    shape = [2147483648, 2147483648, 0]
    tensor: dict[str, object] = {"name": "in", "datatype": "FP32", "shape": shape}
    if binary:
        tensor["parameters"] = {"binary_data_size": 0}
    else:
        tensor["data"] = []
    body = orjson.dumps({"inputs": [tensor]})
    headers = {"Inference-Header-Content-Length": str(len(body))} if binary else {}
    response = httpx.post(f"{budget_server.base}{DEEP}", content=body, headers=headers)
    assert response.status_code == 400, response.text[:300]
    assert "multiply" in response.json()["error"]
    assert "Traceback" not in budget_server.log()


def test_48_mib_of_trailers_get_431_within_the_budget(budget_server: LiveServer) -> None:
    """Trailer fields after the last chunk count against MAX_HEADER_BYTES (64 KiB here)."""
    limit = 48 << 20
    tensor = b'{"inputs":[{"name":"index","datatype":"INT64","shape":[1],"data":[1]}]}'
    head = (
        f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    first = head + b"%x\r\n%s\r\n0\r\n" % (len(tensor), tensor)
    line = b"X-Trailer: " + b"a" * (1 << 20) + b"\r\n"
    before = peak_rss(budget_server)
    with socket.create_connection(("127.0.0.1", budget_server.port), timeout=GENEROUS_S) as sock:
        sent, answer = send_until_answered(sock, first, line, limit)
        if answer is None and sent >= limit:  # read it all: end the trailers, see the answer
            sock.sendall(b"\r\n")
            answer = read_response(sock)
    assert answer is not None, f"the server hung up after {sent} bytes without an answer"
    status, headers, body = answer
    assert_json_error(status, headers, body, 431)
    assert sent < limit
    assert peak_rss(budget_server) - before <= BUDGET


def gzip_of_zeros(size: int) -> bytes:
    """`size` zero bytes, gzipped a MiB at a time (never all in memory here)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(bytes(1 << 20)) for _ in range(size >> 20)]
    return b"".join([*parts, compressor.flush()])


def test_health_checks_are_answered_while_a_large_gzip_body_inflates(
    budget_server: LiveServer,
) -> None:
    """Inflating is done on a thread: the event loop answers other requests meanwhile. The
    body is small (32 KiB, read at once) and inflates for a long while (to MAX_BODY_BYTES,
    then 413), so health checks answered before its reply were answered during inflation; on
    the event loop, at most the first could be (ordering only: nothing here is timed)."""
    bomb = gzip_of_zeros(2 * MAX_BODY)
    head = (
        f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    ).encode()
    answered = 0
    with (
        socket.create_connection(("127.0.0.1", budget_server.port), timeout=GENEROUS_S) as sock,
        httpx.Client(base_url=budget_server.base, timeout=GENEROUS_S) as client,
    ):
        assert client.get("/v2/health/live").status_code == 200  # connected before the bomb
        sock.sendall(head + bomb)
        while not select.select([sock], [], [], 0)[0] and answered < 100_000:
            assert client.get("/v2/health/live").status_code == 200
            answered += 1
        status, headers, body = read_response(sock)
    assert_json_error(status, headers, body, 413)
    assert answered >= HEALTH_CHECKS_DURING_INFLATION, answered


def test_health_checks_are_answered_while_a_large_reply_is_compressed(
    budget_server: LiveServer,
) -> None:
    """Encoding and compressing a large reply is done on a thread too. The request is small
    (parsed at once) and its model's run short; its 16 MiB reply, of a random 64 KiB row
    repeated (nothing for gzip to find in its 32 KiB window), takes long to compress."""
    row = np.random.default_rng(5).standard_normal((1, 16384)).astype(np.float32)
    repeats = MAX_BODY // row.nbytes
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "row",
                    "datatype": "FP32",
                    "shape": [1, row.shape[1]],
                    "parameters": {"binary_data_size": row.nbytes},
                },
                {"name": "repeats", "datatype": "INT64", "shape": [2], "data": [repeats, 1]},
            ],
            "outputs": [{"name": "tiled", "parameters": {"binary_data": True}}],
        }
    )
    body = head + row.tobytes()
    request = (
        f"POST /v2/models/tile/infer HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
        f"Inference-Header-Content-Length: {len(head)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answered = 0
    with (
        socket.create_connection(("127.0.0.1", budget_server.port), timeout=GENEROUS_S) as sock,
        httpx.Client(base_url=budget_server.base, timeout=GENEROUS_S) as client,
    ):
        assert client.get("/v2/health/live").status_code == 200
        sock.sendall(request + body)
        while not select.select([sock], [], [], 0)[0] and answered < 100_000:
            assert client.get("/v2/health/live").status_code == 200
            answered += 1
        status, headers, reply = read_response(sock)
    assert status == 200, reply[:300]
    assert headers["content-encoding"] == "gzip"
    inflated = gzip.decompress(reply)
    length = int(headers["inference-header-content-length"])
    tiled = np.frombuffer(inflated[length:], dtype="<f4").reshape(repeats, -1)
    assert np.array_equal(tiled, np.tile(row, (repeats, 1)))
    assert answered >= HEALTH_CHECKS_DURING_COMPRESSION, answered
