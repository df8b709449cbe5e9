"""Property tests: whatever a client sends, the server answers without a 5xx.

Bodies are built to look like inference requests (so validation is exercised deeply, not
just the JSON parser), plus raw bytes and random binary-extension headers.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.tensors import NUMPY_DTYPES
from tests.service.live_server import LiveServer

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.sampled_from(["input", "in_FP32", "in_BYTES", "in_BOOL", "logits", "label", ""]) | (
    st.text(max_size=8)
)
datatypes = st.sampled_from([*NUMPY_DTYPES, "FP8", "fp32", ""])
scalars = (
    st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.booleans()
    | st.text(max_size=4)
    | st.none()
)
shapes = st.lists(st.integers(min_value=-2, max_value=300) | st.just(2**40), max_size=3)
data = st.recursive(st.lists(scalars, max_size=6), lambda inner: st.lists(inner, max_size=3))
parameters = st.dictionaries(
    st.sampled_from(["binary_data_size", "binary_data", "binary_data_output", "x"]),
    st.integers(min_value=-5, max_value=2000) | st.booleans() | st.text(max_size=3),
    max_size=2,
)
tensors = st.fixed_dictionaries(
    {"name": names, "datatype": datatypes, "shape": shapes},
    optional={"data": data, "parameters": parameters},
)
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3)},
    optional={
        "id": st.text(max_size=4) | st.integers(),
        "outputs": st.lists(
            st.fixed_dictionaries({"name": names}, optional={"parameters": parameters}),
            max_size=2,
        ),
        "parameters": parameters,
    },
)
paths = st.sampled_from(
    [
        "/v2/models/mlp/infer",
        "/v2/models/identity/infer",
        "/v2/models/identity/versions/3/infer",
        "/v2/models/mlp/versions/0/infer",
        "/v2/models/ghost/infer",
    ]
)


@pytest.fixture(scope="module")
def http(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base, timeout=30)


def assert_client_error_or_success(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)


@FUZZ
@given(
    path=paths,
    document=requests,
    tail=st.binary(max_size=64),
    header=st.none()
    | st.just("exact")
    | st.integers(-3, 600)
    | st.text("0123456789-x", max_size=3),
)
def test_structured_requests_never_5xx(
    http: httpx.Client, path: str, document: dict[str, object], tail: bytes, header: object
) -> None:
    body = json.dumps(document).encode()  # stdlib: also writes ints beyond 64 bits
    headers = {}
    if header is not None:
        # "exact": a well-formed binary request whose tail is random tensor bytes.
        headers["Inference-Header-Content-Length"] = str(len(body) if header == "exact" else header)
        body += tail
    assert_client_error_or_success(http.post(path, content=body, headers=headers))


@FUZZ
@given(
    batch=arrays(
        np.float32, st.tuples(st.integers(0, 3), st.just(256)), elements=st.floats(width=32)
    ),
    binary_input=st.booleans(),
    outputs=st.sets(st.sampled_from(["logits", "label"])),
    binary_output=st.booleans(),
)
def test_valid_requests_always_succeed(
    http: httpx.Client,
    batch: np.ndarray,
    binary_input: bool,
    outputs: set[str],
    binary_output: bool,
) -> None:
    """Any batch size (even 0) and any float32 values (even NaN and inf in binary form)."""
    binary_input = binary_input or not np.isfinite(batch).all()  # JSON has no NaN
    tensor: dict[str, object] = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
    if binary_input:
        tensor["parameters"] = {"binary_data_size": batch.nbytes}
    else:
        tensor["data"] = batch.tolist()
    document: dict[str, object] = {"inputs": [tensor]}
    if outputs:
        flag = {"binary_data": binary_output}
        document["outputs"] = [{"name": name, "parameters": flag} for name in sorted(outputs)]
    body, headers = orjson.dumps(document), {}
    if binary_input:
        headers["Inference-Header-Content-Length"] = str(len(body))
        body += batch.tobytes()
    response = http.post("/v2/models/mlp/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    header_length = int(
        response.headers.get("inference-header-content-length", len(response.content))
    )
    answer = orjson.loads(response.content[:header_length])
    returned = {output["name"]: output["shape"] for output in answer["outputs"]}
    expected = {"logits": [len(batch), 10], "label": [len(batch)]}
    assert returned == {name: expected[name] for name in (outputs or expected)}


@FUZZ
@given(path=paths, body=st.binary(max_size=256))
def test_raw_bytes_never_5xx(http: httpx.Client, path: str, body: bytes) -> None:
    assert_client_error_or_success(http.post(path, content=body))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.lists(
        st.sampled_from(["v2", "models", "mlp", "versions", "1", "ready", "config", "infer", "x"]),
        max_size=6,
    ),
)
def test_random_routes_never_5xx(http: httpx.Client, method: str, path: list[str]) -> None:
    response = http.request(method, "/" + "/".join(path))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert "error" in response.json()


def test_server_still_healthy_after_fuzzing(server: LiveServer, http: httpx.Client) -> None:
    assert server.process.poll() is None
    assert http.get("/v2/health/ready").status_code == 200
    assert "Traceback" not in server.log()
