"""Property tests: whatever a client sends, the server answers without a 5xx; and every valid
request gets 200 with exactly the outputs it asked for, in its order and encoding.

Bodies are built to look like inference requests (so validation is exercised deeply, not
just the JSON parser), plus raw bytes and random binary-extension headers.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.tensors import NUMPY_DTYPES
from tests.service.conftest import BATCH_ROWS
from tests.service.live_server import LiveServer
from tests.service.model_factory import COLUMNS, ONNX_TYPES, sample_arrays
from tests.service.responses import decode_response, request_body

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
    outputs=st.lists(st.sampled_from(["logits", "label"]), unique=True),
    binary_output=st.booleans(),
)
def test_valid_requests_always_succeed(
    http: httpx.Client,
    batch: np.ndarray,
    binary_input: bool,
    outputs: list[str],
    binary_output: bool,
) -> None:
    """Any batch size (even 0) and any float32 values (even NaN and inf in binary form); the
    outputs asked for, in that order (all of them, in the model's order, if none)."""
    binary_input = binary_input or not np.isfinite(batch).all()  # JSON has no NaN
    tensor: dict[str, object] = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
    if binary_input:
        tensor["parameters"] = {"binary_data_size": batch.nbytes}
    else:
        tensor["data"] = batch.tolist()
    document: dict[str, object] = {"inputs": [tensor]}
    if outputs:
        flag = {"binary_data": binary_output}
        document["outputs"] = [{"name": name, "parameters": flag} for name in outputs]
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
    returned = [(output["name"], output["shape"]) for output in answer["outputs"]]
    expected = {"logits": [len(batch), 10], "label": [len(batch)]}
    assert returned == [(name, expected[name]) for name in (outputs or expected)]


# Valid identity-model requests: every datatype, 0-2 rows, each input as JSON or binary, any
# outputs in any order, binary or not per output and per request.
OUTPUT_NAMES = [f"out_{datatype}" for datatype in ONNX_TYPES]
FLAG = st.sampled_from([None, True, False])  # None: the parameter is left out
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=5)
FLOAT_WIDTHS: dict[str, Literal[16, 32, 64]] = {"FP16": 16, "FP32": 32, "FP64": 64}


@st.composite
def identity_requests(
    draw: st.DrawFn, max_rows: int = 2, any_values: bool = True
) -> dict[str, Any]:
    """A valid request and what it must get back; with any_values=False the tensors are
    sample_arrays() of a drawn seed (less for Hypothesis to generate, same checks)."""
    rows = draw(st.integers(0, max_rows))
    listed = draw(st.none() | st.lists(st.sampled_from(OUTPUT_NAMES), min_size=1, unique=True))
    request_flag, flags = draw(FLAG), {name: draw(FLAG) for name in OUTPUT_NAMES}
    default = bool(request_flag)
    wanted = [
        (name, default if listed is None or flags[name] is None else bool(flags[name]))
        for name in (listed or OUTPUT_NAMES)
    ]
    binary_outputs = {name for name, binary in wanted if binary}
    binary_inputs = draw(st.sets(st.sampled_from([f"in_{d}" for d in ONNX_TYPES])))
    inputs: dict[str, tuple[str, np.ndarray]] = {}
    samples = sample_arrays(rows, seed=draw(st.integers(0, 1000)))
    for datatype in ONNX_TYPES:
        name, shape = f"in_{datatype}", (rows, COLUMNS)
        if not any_values:
            array = samples[datatype]
        elif datatype == "BYTES":
            texts = draw(st.lists(TEXT, min_size=rows * COLUMNS, max_size=rows * COLUMNS))
            array = np.array(texts, dtype=object).reshape(shape)
        elif datatype.startswith("FP"):
            # JSON has no NaN or infinity: only data that is binary both ways may hold them.
            exact = name in binary_inputs and f"out_{datatype}" in binary_outputs
            width = FLOAT_WIDTHS[datatype]
            floats = st.floats(width=width, allow_nan=exact, allow_infinity=exact)
            array = draw(arrays(NUMPY_DTYPES[datatype], shape, elements=floats))
        else:
            array = draw(arrays(NUMPY_DTYPES[datatype], shape))
        inputs[name] = (datatype, array)
    outputs: list[dict[str, object]] | None = None
    if listed is not None:
        outputs = [
            {"name": name}
            if flags[name] is None
            else {"name": name, "parameters": {"binary_data": flags[name]}}
            for name in listed
        ]
    parameters: dict[str, object] | None = None
    if request_flag is not None:
        parameters = {"binary_data_output": request_flag}
    body, headers = request_body(inputs, binary_inputs, outputs, parameters)
    return {"body": body, "headers": headers, "inputs": inputs, "wanted": wanted}


def check_identity_answer(response: httpx.Response, request: dict[str, Any]) -> None:
    received = decode_response(response)
    assert [(name, binary) for name, _, binary in received] == request["wanted"]
    for name, array, _ in received:
        _, sent = request["inputs"][name.replace("out_", "in_")]
        assert array.dtype == sent.dtype, name
        np.testing.assert_array_equal(array, sent, err_msg=name)


@settings(FUZZ, max_examples=100)
@given(request=identity_requests())
def test_valid_identity_requests_round_trip(http: httpx.Client, request: dict[str, Any]) -> None:
    """Every datatype's values come back unchanged: nothing valid is refused, and exactly the
    outputs asked for come back, in the requested order and encoding."""
    path = "/v2/models/identity/infer"
    response = http.post(path, content=request["body"], headers=request["headers"])
    check_identity_answer(response, request)


def runs_within(server: LiveServer, rows: int) -> tuple[float, float]:
    """(session runs of the identity model, those of at most ``rows`` rows) so far."""
    within = server.metric("inference_batch_rows_bucket", f'le="{float(rows)}",model="identity"')
    return server.metric("inference_batch_rows_count", 'model="identity"'), within


@settings(FUZZ, max_examples=25)
@given(
    requests=st.lists(
        identity_requests(max_rows=BATCH_ROWS, any_values=False), min_size=2, max_size=6
    )
)
def test_concurrent_requests_of_any_rows_are_split_back(
    eager_batching_server: LiveServer, requests: list[dict[str, Any]]
) -> None:
    """Requests merged by the batcher, whatever their rows add up to, each get their own
    rows and outputs back, and no session run holds more than MAX_BATCH_SIZE rows."""

    def send(request: dict[str, Any]) -> httpx.Response:
        url = f"{eager_batching_server.base}/v2/models/identity/infer"
        return httpx.post(url, content=request["body"], headers=request["headers"], timeout=30)

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(send, requests))
    for response, request in zip(responses, requests, strict=True):
        check_identity_answer(response, request)
    runs, within = runs_within(eager_batching_server, BATCH_ROWS)
    assert runs == within > 0


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
