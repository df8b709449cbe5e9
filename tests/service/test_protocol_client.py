"""The protocol through the stock client (tritonclient[http]) and raw HTTP, binary and JSON."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as triton

import service
from service.settings import DEFAULT_MAX_BATCH_SIZE
from tests.service.conftest import BATCH_ROWS
from tests.service.live_server import LiveServer
from tests.service.model_factory import DEFAULT_MODEL, ONNX_TYPES, sample_arrays


@pytest.fixture(scope="module")
def client(server: LiveServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url)


def reference_outputs(batch: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    return list(session.run(["logits", "label"], {"input": batch}))


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("identity", "1")
    metadata = client.get_server_metadata()
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_reports_signature_and_providers(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("mlp")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 256]}]
    assert metadata["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert metadata["execution_providers"] == ["CPUExecutionProvider"]
    assert client.get_model_metadata("identity")["versions"] == ["1", "3"]


def identity_config(max_batch_size: int) -> dict[str, object]:
    """Triton's config of the identity model: BYTES is TYPE_STRING; dims leave out the batch
    dimension when the batcher serves the model (max_batch_size > 0)."""

    def tensors(prefix: str) -> list[dict[str, object]]:
        return [
            {
                "name": f"{prefix}_{datatype}",
                "data_type": f"TYPE_{'STRING' if datatype == 'BYTES' else datatype}",
                "dims": [2] if max_batch_size else [-1, 2],
            }
            for datatype in ONNX_TYPES
        ]

    return {
        "name": "identity",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_batch_size,
        "input": tensors("in"),
        "output": tensors("out"),
        "instance_group": [{"kind": "KIND_CPU"}],
    }


def without_sha256(config: dict[str, object]) -> dict[str, object]:
    """The config less its model-file sha256 parameter (test_model_identity.py checks it)."""
    parameters = dict(config.pop("parameters"))  # type: ignore[call-overload]
    assert len(parameters.pop("sha256")["string_value"]) == 64
    return config | ({"parameters": parameters} if parameters else {})


def batching(delay_us: int, larger: str) -> dict[str, object]:
    """The config's batching entries: the delay, and what a request of more rows gets."""
    return {
        "dynamic_batching": {"max_queue_delay_microseconds": delay_us},
        "parameters": {"requests_over_max_batch_size": {"string_value": larger}},
    }


def test_model_config_documents(
    server: LiveServer, unbatched_server: LiveServer, batching_server: LiveServer
) -> None:
    """Defaults: batching with a cap of 64 rows that larger requests pass alone. MAX_BATCH_SIZE
    set: a hard cap (larger requests get 400, as in Triton). MAX_BATCH_SIZE=0: no batching."""
    default = without_sha256(httpx.get(f"{server.base}/v2/models/identity/config").json())
    assert default == identity_config(DEFAULT_MAX_BATCH_SIZE) | batching(0, "run_alone")
    plain = without_sha256(httpx.get(f"{unbatched_server.base}/v2/models/identity/config").json())
    assert plain == identity_config(0)
    hard_url = f"{batching_server.base}/v2/models/identity/versions/1/config"
    hard = without_sha256(httpx.get(hard_url).json())
    assert hard == identity_config(BATCH_ROWS) | batching(60_000_000, "refused")  # 60000 ms


def test_server_metadata_and_health_documents(server: LiveServer) -> None:
    metadata = httpx.get(f"{server.base}/v2")
    assert metadata.json() == {
        "name": "onnx-serving",
        "version": service.__version__,
        "extensions": ["binary_tensor_data", "model_configuration"],
    }
    assert "server" not in metadata.headers  # no software banner
    assert httpx.get(f"{server.base}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.base}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{server.base}/v2/models/mlp/ready").json()
    assert ready == {"name": "mlp", "version": "1", "ready": True}


def test_model_config_without_batching(unbatched_server: LiveServer) -> None:
    config = triton.InferenceServerClient(unbatched_server.url).get_model_config("mlp")
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 256]}]
    assert "dynamic_batching" not in config and list(config["parameters"]) == ["sha256"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_mlp_inference_matches_onnxruntime(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    batch = np.random.default_rng(1).standard_normal((5, 256)).astype(np.float32)
    request_input = triton.InferInput("input", list(batch.shape), "FP32")
    request_input.set_data_from_numpy(batch, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("logits", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("mlp", [request_input], outputs=outputs, request_id="req-7")
    logits, label = reference_outputs(batch)
    np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    assert result.get_response()["id"] == "req-7"
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(client: triton.InferenceServerClient, binary: bool) -> None:
    arrays = sample_arrays(rows=3, seed=2)
    inputs = []
    for datatype, array in arrays.items():
        tensor = triton.InferInput(f"in_{datatype}", list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(f"out_{dt}", binary_data=binary) for dt in ONNX_TYPES]
    result = client.infer("identity", inputs, outputs=outputs, model_version="3")
    for datatype, array in arrays.items():
        received = result.as_numpy(f"out_{datatype}")
        assert received is not None, datatype
        if datatype == "BYTES":
            decoded = [item.decode() if isinstance(item, bytes) else item for item in received.flat]
            assert decoded == list(array.flat)
        else:
            assert received.dtype == array.dtype, datatype
            np.testing.assert_array_equal(received, array, err_msg=datatype)


def test_requested_outputs_only_and_mixed_encodings(client: triton.InferenceServerClient) -> None:
    batch = np.ones((2, 256), dtype=np.float32)
    request_input = triton.InferInput("input", [2, 256], "FP32")
    request_input.set_data_from_numpy(batch)
    result = client.infer(
        "mlp", [request_input], outputs=[triton.InferRequestedOutput("label", binary_data=False)]
    )
    response = result.get_response()
    assert [output["name"] for output in response["outputs"]] == ["label"]
    assert "data" in response["outputs"][0]
    np.testing.assert_array_equal(result.as_numpy("label"), reference_outputs(batch)[1])


def test_default_outputs_follow_request_level_binary_flag(
    client: triton.InferenceServerClient,
) -> None:
    batch = np.zeros((1, 256), dtype=np.float32)
    request_input = triton.InferInput("input", [1, 256], "FP32")
    request_input.set_data_from_numpy(batch)
    result = client.infer("mlp", [request_input])  # no outputs: client asks for all, binary
    for output in result.get_response()["outputs"]:
        assert output["parameters"]["binary_data_size"] > 0
    np.testing.assert_array_equal(result.as_numpy("label"), reference_outputs(batch)[1])


def mlp_request(outputs: list[dict[str, object]] | None, **parameters: object) -> bytes:
    document: dict[str, object] = {
        "inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]
    }
    if outputs is not None:
        document["outputs"] = outputs
    if parameters:
        document["parameters"] = parameters
    return orjson.dumps(document)


def response_outputs(response: httpx.Response) -> list[dict[str, object]]:
    """The output entries of a JSON or binary-extension response, in their order."""
    assert response.status_code == 200, response.text
    length = int(response.headers.get("inference-header-content-length", len(response.content)))
    outputs: list[dict[str, object]] = orjson.loads(response.content[:length])["outputs"]
    return outputs


@pytest.mark.parametrize("names", [["logits", "label"], ["label", "logits"], ["label"]], ids=str)
def test_outputs_come_in_the_requested_order(server: LiveServer, names: list[str]) -> None:
    body = mlp_request([{"name": name} for name in names])
    response = httpx.post(f"{server.base}/v2/models/mlp/infer", content=body)
    assert [output["name"] for output in response_outputs(response)] == names
    # Without a list, all of them, in the model's order (its metadata's).
    everything = httpx.post(f"{server.base}/v2/models/mlp/infer", content=mlp_request(None))
    assert [output["name"] for output in response_outputs(everything)] == ["logits", "label"]


def test_request_level_binary_flag_applies_to_listed_outputs(server: LiveServer) -> None:
    """binary_data_output is the default of every output, listed or not; an output's own
    binary_data overrides it."""
    listed: list[dict[str, object]] = [
        {"name": "label"},
        {"name": "logits", "parameters": {"binary_data": False}},
    ]
    body = mlp_request(listed, binary_data_output=True)
    response = httpx.post(f"{server.base}/v2/models/mlp/infer", content=body)
    label, logits = response_outputs(response)
    assert "data" not in label
    assert label["parameters"] == {"binary_data_size": 8}  # one INT64
    assert "data" in logits and "parameters" not in logits
    assert response.content.endswith(np.int64(label_of(0.5)).tobytes())

    as_json = httpx.post(
        f"{server.base}/v2/models/mlp/infer",
        content=mlp_request([{"name": "label"}], binary_data_output=False),
    )
    assert response_outputs(as_json)[0]["data"] == [label_of(0.5)]


def label_of(value: float) -> int:
    return int(reference_outputs(np.full((1, 256), value, dtype=np.float32))[1][0])


def test_nested_and_flat_json_data_agree(server: LiveServer) -> None:
    batch = np.random.default_rng(3).standard_normal((2, 256)).astype(np.float32)
    answers = []
    for data in (batch.tolist(), batch.reshape(-1).tolist()):
        body = {"inputs": [{"name": "input", "shape": [2, 256], "datatype": "FP32", "data": data}]}
        response = httpx.post(f"{server.base}/v2/models/mlp/infer", json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[0] == answers[1]
    label = next(o for o in answers[0]["outputs"] if o["name"] == "label")
    assert label == {
        "name": "label",
        "datatype": "INT64",
        "shape": [2],
        "data": reference_outputs(batch)[1].tolist(),
    }
    assert "id" not in answers[0]


def test_versioned_routes(server: LiveServer) -> None:
    assert httpx.get(f"{server.base}/v2/models/identity/versions/1").json()["name"] == "identity"
    ready = httpx.get(f"{server.base}/v2/models/identity/versions/3/ready").json()
    assert ready == {"name": "identity", "version": "3", "ready": True}
    body = {
        "inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]
    }
    response = httpx.post(f"{server.base}/v2/models/mlp/versions/1/infer", json=body)
    assert response.status_code == 200
    assert response.json()["model_version"] == "1"


def test_openapi_documents_every_route(server: LiveServer) -> None:
    paths = httpx.get(f"{server.base}/openapi.json").json()["paths"]
    for path in (
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        operation = paths[path]["post"]
        assert (
            "inputs"
            in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
        )
        # The same path parameters as FastAPI documents for the metadata routes.
        metadata_route = path.removesuffix("/infer")
        expected = paths[metadata_route]["get"]["parameters"]
        for parameter in expected:
            parameter["schema"].pop("title")
        assert operation["parameters"] == expected
    assert {"/v2", "/v2/health/ready", "/v2/models/{model_name}/config", "/metrics"} <= set(paths)
