"""A request's `id` comes back in its response as given, even when it is empty or blank
(Open Inference Protocol: the response's `id` is the request's). The inference log's use of
it: test_inference_log_request_ids.py."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from service.protocol import encode_inference_response, parse_inference_request
from service.tensors import TensorSpec
from tests.service.live_server import LiveServer

INFER = "/v2/models/mlp/infer"


def mlp_body(request_id: str | None, binary: bool) -> bytes:
    document: dict[str, object] = {
        "inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}],
        "parameters": {"binary_data_output": binary},
    }
    if request_id is not None:
        document["id"] = request_id
    return orjson.dumps(document)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("request_id", ["", " ", "0"], ids=repr)
def test_a_request_id_is_echoed_as_given_even_when_empty(
    server: LiveServer, request_id: str, binary: bool
) -> None:
    response = httpx.post(f"{server.base}{INFER}", content=mlp_body(request_id, binary))
    assert response.status_code == 200, response.text
    length = int(response.headers.get("inference-header-content-length", len(response.content)))
    assert ("inference-header-content-length" in response.headers) == binary
    assert orjson.loads(response.content[:length])["id"] == request_id


@pytest.mark.parametrize("request_id", ["", "r-1", None], ids=repr)
def test_the_parsed_request_keeps_its_id_for_the_response(request_id: str | None) -> None:
    spec = {"x": TensorSpec("x", "FP32", (-1,))}
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        | ({} if request_id is None else {"id": request_id})
    )
    parsed = parse_inference_request(body, {}, spec, spec)
    assert parsed.id == request_id
    results = {"x": np.ones(1, np.float32)}
    header = orjson.loads(encode_inference_response("m", "1", parsed, results, spec).body)
    assert header.get("id") == request_id and ("id" in header) == (request_id is not None)
