"""Bad requests get a 4xx `{"error": ...}` naming the problem, and the server keeps serving."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from tests.service.conftest import TEST_MAX_BODY_BYTES
from tests.service.live_server import LiveServer
from tests.service.model_factory import ONNX_TYPES

MLP = "/v2/models/mlp/infer"
IDENTITY = "/v2/models/identity/infer"
ROW = [0.25] * 256
HEADER = "Inference-Header-Content-Length"


def mlp_json(**changes: object) -> bytes:
    tensor: dict[str, object] = {
        "name": "input",
        "shape": [1, 256],
        "datatype": "FP32",
        "data": ROW,
    }
    tensor.update(changes)
    return orjson.dumps({"inputs": [tensor]})


def binary_body(
    size: object, raw: bytes, name: str = "input", shape: object = None
) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape or [1, 256],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + raw, {HEADER: str(len(header))}


def identity_body(datatype: str, data: object) -> bytes:
    """A valid identity-model request, except that ``datatype``'s input carries ``data``."""
    inputs: list[dict[str, object]] = []
    for name in ONNX_TYPES:
        valid = {"BOOL": [True, False], "BYTES": ["a", "b"]}.get(name, [1, 0])
        value = data if name == datatype else valid
        inputs.append({"name": f"in_{name}", "shape": [1, 2], "datatype": name, "data": value})
    return orjson.dumps({"inputs": inputs})


FLOATS = np.zeros(256, dtype="<f4").tobytes()

# (id, path, body, extra headers, status, fragment the error must contain)
CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("malformed-json", MLP, b'{"inputs": [', {}, 400, "not valid JSON"),
    ("json-not-object", MLP, b"[1, 2]", {}, 400, "JSON object"),
    (
        "nan-literal",
        MLP,
        b'{"inputs": [{"name": "input", "data": [NaN]}]}',
        {},
        400,
        "not valid JSON",
    ),
    ("no-inputs", MLP, b'{"outputs": []}', {}, 400, "'inputs'"),
    ("unknown-input", MLP, mlp_json(name="pixels"), {}, 400, "'pixels'"),
    ("wrong-datatype", MLP, mlp_json(datatype="FP64"), {}, 400, "'FP64'"),
    ("wrong-rank", MLP, mlp_json(shape=[256]), {}, 400, "[256]"),
    ("wrong-fixed-dim", MLP, mlp_json(shape=[1, 255], data=ROW[:255]), {}, 400, "[1, 255]"),
    ("negative-dim", MLP, mlp_json(shape=[-1, 256]), {}, 400, "[-1, 256]"),
    ("count-mismatch", MLP, mlp_json(shape=[2, 256]), {}, 400, "512"),
    ("strings-as-fp32", MLP, mlp_json(data=["x"] * 256), {}, 400, "FP32"),
    ("ragged-data", MLP, mlp_json(shape=[2, 256], data=[ROW, ROW[:10]]), {}, 400, "rectangular"),
    ("null-in-data", MLP, mlp_json(data=[None] * 256), {}, 400, "FP32"),
    ("data-not-list", MLP, mlp_json(data=1.0), {}, 400, "'data' must be a list"),
    (
        "no-data",
        MLP,
        orjson.dumps({"inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32"}]}),
        {},
        400,
        "neither",
    ),
    (
        "bad-id",
        MLP,
        orjson.dumps({"id": 5, "inputs": orjson.loads(mlp_json())["inputs"]}),
        {},
        400,
        "'id'",
    ),
    (
        "duplicate-input",
        MLP,
        orjson.dumps({"inputs": orjson.loads(mlp_json())["inputs"] * 2}),
        {},
        400,
        "twice",
    ),
    (
        "unknown-output",
        MLP,
        orjson.dumps({**orjson.loads(mlp_json()), "outputs": [{"name": "probs"}]}),
        {},
        400,
        "'probs'",
    ),
    (
        "binary-flag-not-bool",
        MLP,
        orjson.dumps(
            {
                **orjson.loads(mlp_json()),
                "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}],
            }
        ),
        {},
        400,
        "'yes'",
    ),
    (
        "request-parameters-not-object",
        MLP,
        orjson.dumps({**orjson.loads(mlp_json()), "parameters": [1]}),
        {},
        400,
        "'parameters' of request must be an object",
    ),
    (
        "request-shared-memory",
        MLP,
        orjson.dumps({**orjson.loads(mlp_json()), "parameters": {"shared_memory_region": "r"}}),
        {},
        400,
        "request: shared memory is not supported by this server",
    ),
    (
        "request-binary-output-not-bool",
        MLP,
        orjson.dumps({**orjson.loads(mlp_json()), "parameters": {"binary_data_output": 1}}),
        {},
        400,
        "parameter 'binary_data_output' of request must be true or false, got 1",
    ),
    ("uint8-out-of-range", IDENTITY, identity_body("UINT8", [300, 1]), {}, 400, "UINT8"),
    ("int8-negative-out-of-range", IDENTITY, identity_body("INT8", [-129, 1]), {}, 400, "-129"),
    ("float-for-int32", IDENTITY, identity_body("INT32", [1.5, 2]), {}, 400, "INT32"),
    ("bool-for-int64", IDENTITY, identity_body("INT64", [True, False]), {}, 400, "INT64"),
    ("bool-among-int64", IDENTITY, identity_body("INT64", [True, 1]), {}, 400, "true/false"),
    ("bool-among-uint8", IDENTITY, identity_body("UINT8", [[7, False]]), {}, 400, "UINT8"),
    ("bool-among-fp32", IDENTITY, identity_body("FP32", [1.5, True]), {}, 400, "true/false"),
    ("bool-among-fp64", IDENTITY, identity_body("FP64", [[0], [False]]), {}, 400, "FP64"),
    ("number-for-bytes", IDENTITY, identity_body("BYTES", [1, 2]), {}, 400, "BYTES"),
    ("ints-for-bool", IDENTITY, identity_body("BOOL", [1, 0]), {}, 400, "BOOL"),
    ("int-among-bools", IDENTITY, identity_body("BOOL", [True, 0]), {}, 400, "BOOL"),
    (
        "missing-input",
        IDENTITY,
        orjson.dumps({"inputs": orjson.loads(identity_body("FP32", [1, 2]))["inputs"][:-1]}),
        {},
        400,
        "in_BYTES",
    ),
    ("header-length-past-body", MLP, b"{}", {HEADER: "100"}, 400, "100"),
    ("header-length-negative", MLP, b"{}", {HEADER: "-1"}, 400, "-1"),
    ("header-length-not-int", MLP, b"{}", {HEADER: "ten"}, 400, "'ten'"),
    ("truncated-binary", MLP, *binary_body(1024, FLOATS[:1000]), 400, "1024"),
    ("negative-binary-size", MLP, *binary_body(-4, FLOATS), 400, "-4"),
    ("string-binary-size", MLP, *binary_body("1024", FLOATS), 400, "'1024'"),
    ("size-mismatches-shape", MLP, *binary_body(1020, FLOATS[:1020]), 400, "1020"),
    ("size-exceeds-shape", MLP, *binary_body(1028, FLOATS + bytes(4)), 400, "1028"),
    ("unclaimed-bytes", MLP, *binary_body(1024, FLOATS + b"\0\0\0\0"), 400, "4 bytes"),
    ("binary-without-header", MLP, binary_body(1024, FLOATS)[0], {}, 400, "not valid JSON"),
    ("size-without-header-length", MLP, binary_body(1024, b"")[0], {}, 400, "runs past"),
]


@pytest.fixture
def check_still_serving(server: LiveServer) -> Iterator[None]:
    yield
    assert server.process.poll() is None, server.log()
    response = httpx.post(f"{server.base}{MLP}", content=mlp_json())
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("check_still_serving")
@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_is_rejected_with_named_error(
    server: LiveServer, path: str, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    response = httpx.post(f"{server.base}{path}", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error


def binary_input_body(datatype: str, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """Identity request whose ``datatype`` input comes as binary data ``raw``."""
    document = orjson.loads(identity_body("FP32", [1, 2]))
    index = list(ONNX_TYPES).index(datatype)
    document["inputs"][index] = {
        "name": f"in_{datatype}",
        "shape": [1, 2],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    header = orjson.dumps(document)
    return header + raw, {HEADER: str(len(header))}


@pytest.mark.usefixtures("check_still_serving")
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (struct.pack("<I", 9) + b"abc", "runs past"),
        (struct.pack("<I", 1) + b"a" + b"\x01\x00", "truncated"),
        (struct.pack("<I", 2) + b"\xff\xfe" + struct.pack("<I", 0), "UTF-8"),
        (struct.pack("<I", 1) + b"a", "holds 1 BYTES elements"),
        ((struct.pack("<I", 1) + b"a") * 3, "shape needs 2"),
    ],
    ids=["element-past-end", "truncated-prefix", "not-utf8", "too-few", "too-many"],
)
def test_bad_binary_bytes_elements(server: LiveServer, raw: bytes, fragment: str) -> None:
    body, headers = binary_input_body("BYTES", raw)
    response = httpx.post(f"{server.base}{IDENTITY}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


@pytest.mark.usefixtures("check_still_serving")
@pytest.mark.parametrize(
    "elements", [["a", ""], ["", ""], ["", "b"]], ids=["last-empty", "all-empty", "first-empty"]
)
def test_binary_bytes_elements_may_be_empty(server: LiveServer, elements: list[str]) -> None:
    raw = b"".join(struct.pack("<I", len(e)) + e.encode() for e in elements)
    body, headers = binary_input_body("BYTES", raw)
    document = orjson.loads(body[: int(headers[HEADER])])
    document["outputs"] = [{"name": "out_BYTES"}]
    header = orjson.dumps(document)
    response = httpx.post(
        f"{server.base}{IDENTITY}", content=header + raw, headers={HEADER: str(len(header))}
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == elements


@pytest.mark.usefixtures("check_still_serving")
def test_binary_bool_bytes_other_than_0_and_1_are_refused(server: LiveServer) -> None:
    body, headers = binary_input_body("BOOL", b"\x01\x02")
    response = httpx.post(f"{server.base}{IDENTITY}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "in_BOOL" in error and "byte 2" in error
    body, headers = binary_input_body("BOOL", b"\x01\x00")
    response = httpx.post(f"{server.base}{IDENTITY}", content=body, headers=headers)
    assert response.status_code == 200, response.text


def test_numbers_0_and_1_are_not_taken_for_bools(server: LiveServer) -> None:
    """0 and 1 send numeric data down the slower bool check, which must accept them."""
    document = orjson.loads(identity_body("FP32", [[1.0, 0]]))
    document["inputs"][list(ONNX_TYPES).index("INT64")]["data"] = [[0, 1]]
    document["outputs"] = [{"name": "out_FP32"}, {"name": "out_INT64"}]
    response = httpx.post(f"{server.base}{IDENTITY}", content=orjson.dumps(document))
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    assert outputs == {"out_FP32": [1.0, 0.0], "out_INT64": [0, 1]}


@pytest.mark.usefixtures("check_still_serving")
@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("POST", "/v2/models/resnet/infer", 404, "'resnet'"),
        ("POST", "/v2/models/mlp/versions/2/infer", 404, "'2'"),
        ("POST", "/v2/models/mlp/versions/latest/infer", 404, "'latest'"),
        ("GET", "/v2/models/resnet", 404, "'resnet'"),
        ("GET", "/v2/models/mlp/versions/9/ready", 404, "'9'"),
        ("GET", "/v2/models/resnet/config", 404, "'resnet'"),
        ("GET", "/v2/no/such/path", 404, "Not Found"),
        ("GET", "/v2/models/mlp/infer", 405, "Method Not Allowed"),
        ("DELETE", "/v2", 405, "Method Not Allowed"),
    ],
)
def test_unknown_models_versions_and_routes(
    server: LiveServer, method: str, path: str, status: int, fragment: str
) -> None:
    response = httpx.request(method, f"{server.base}{path}", content=mlp_json())
    assert response.status_code == status
    assert fragment in response.json()["error"]


def padded(size: int) -> bytes:
    """A valid request of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    body = mlp_json()
    return body + b" " * (size - len(body))


def test_body_of_exactly_max_body_bytes_is_accepted(server: LiveServer) -> None:
    body = padded(TEST_MAX_BODY_BYTES)
    declared = httpx.post(f"{server.base}{MLP}", content=body)
    assert declared.status_code == 200, declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = httpx.post(f"{server.base}{MLP}", content=chunks())
    assert streamed.status_code == 200, streamed.text
    one_more = httpx.post(f"{server.base}{MLP}", content=padded(TEST_MAX_BODY_BYTES + 1))
    assert one_more.status_code == 413, one_more.text


@pytest.mark.usefixtures("check_still_serving")
def test_oversize_body_is_413(server: LiveServer) -> None:
    body = b" " * (TEST_MAX_BODY_BYTES + 1)
    response = httpx.post(f"{server.base}{MLP}", content=body)
    assert response.status_code == 413
    assert f"MAX_BODY_BYTES={TEST_MAX_BODY_BYTES}" in response.json()["error"]


@pytest.mark.usefixtures("check_still_serving")
def test_oversize_chunked_body_without_length_is_413(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(TEST_MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    response = httpx.post(f"{server.base}{MLP}", content=chunks())
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.json()["error"]
