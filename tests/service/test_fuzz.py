"""Property tests: whatever a client sends, the server answers without a 5xx.

Bodies are built to look like inference requests (so validation is exercised deeply, not
just the JSON parser), plus raw bytes and random binary-extension headers.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
