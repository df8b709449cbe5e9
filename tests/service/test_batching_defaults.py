"""Dynamic batching as configured by default (MAX_BATCH_SIZE unset): concurrent requests
merge, a request over the default cap runs alone and succeeds, and a model without a batch
dimension is never merged. Real server on 127.0.0.1; merging is read from the
``inference_batch_requests`` metric (requests per session run)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from service.settings import DEFAULT_MAX_BATCH_SIZE
from tests.service.live_server import LiveServer, running_server
from tests.service.model_factory import DEFAULT_MODEL, fixed_shape_model

CLIENTS = 16
ROUNDS = 20  # of CLIENTS concurrent requests each, at most, until one run merges some


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Default settings, serving mlp (batchable) and fixed (no batch dimension)."""
    root = tmp_path_factory.mktemp("defaults")
    (root / "mlp" / "1").mkdir(parents=True)
    shutil.copyfile(DEFAULT_MODEL, root / "mlp" / "1" / "model.onnx")
    (root / "fixed" / "1").mkdir(parents=True)
    (root / "fixed" / "1" / "model.onnx").write_bytes(fixed_shape_model().SerializeToString())
    with running_server({"MODEL_REPOSITORY": str(root)}, root / "server.log") as live:
        yield live


def infer(server: LiveServer, model: str, name: str, array: np.ndarray) -> httpx.Response:
    tensor = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
    body = {"inputs": [tensor | {"data": array.ravel().tolist()}]}
    return httpx.post(f"{server.base}/v2/models/{model}/infer", json=body, timeout=60)


def mlp_answer(response: httpx.Response) -> tuple[np.ndarray, np.ndarray]:
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    logits = np.array(outputs["logits"]["data"], np.float32).reshape(outputs["logits"]["shape"])
    return logits, np.array(outputs["label"]["data"], np.int64)


def reference(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    logits, label = session.run(["logits", "label"], {"input": batch})
    return logits, label


def batch_metrics(server: LiveServer, model: str) -> tuple[float, float, float]:
    """(session runs, requests they held, rows they held) so far."""
    labels = f'model="{model}"'
    return (
        server.metric("inference_batch_requests_count", labels),
        server.metric("inference_batch_requests_sum", labels),
        server.metric("inference_batch_rows_sum", labels),
    )


def concurrently(
    server: LiveServer, model: str, name: str, arrays: list[np.ndarray]
) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(arrays)) as pool:
        return list(pool.map(lambda array: infer(server, model, name, array), arrays))


def test_config_says_batching_is_on_with_the_default_cap(default_server: LiveServer) -> None:
    mlp = httpx.get(f"{default_server.base}/v2/models/mlp/config").json()
    assert mlp["max_batch_size"] == DEFAULT_MAX_BATCH_SIZE
    assert mlp["dynamic_batching"] == {"max_queue_delay_microseconds": 0}
    assert mlp["parameters"]["requests_over_max_batch_size"] == {"string_value": "run_alone"}
    fixed = httpx.get(f"{default_server.base}/v2/models/fixed/config").json()
    assert fixed["max_batch_size"] == 0 and fixed["input"][0]["dims"] == [4, 2]
    assert "dynamic_batching" not in fixed and list(fixed["parameters"]) == ["sha256"]


def test_default_settings_merge_concurrent_requests(default_server: LiveServer) -> None:
    """Under concurrency some session run holds more than one request, and every answer is
    what the model gives that request alone."""
    rng = np.random.default_rng(3)
    runs_before, requests_before, _ = batch_metrics(default_server, "mlp")
    sent = 0
    for _ in range(ROUNDS):
        batches = [rng.standard_normal((4, 256)).astype(np.float32) for _ in range(CLIENTS)]
        responses = concurrently(default_server, "mlp", "input", batches)
        for batch, response in zip(batches, responses, strict=True):
            logits, label = mlp_answer(response)
            expected_logits, expected_label = reference(batch)
            np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(label, expected_label)
        sent += CLIENTS
        runs, requests, _ = batch_metrics(default_server, "mlp")
        if runs - runs_before < requests - requests_before:
            break
    assert requests - requests_before == sent
    assert runs - runs_before < sent, "no session run ever held two requests"


def test_a_request_over_the_default_cap_runs_alone_and_succeeds(
    default_server: LiveServer,
) -> None:
    rows = DEFAULT_MAX_BATCH_SIZE + 36
    large = np.random.default_rng(4).standard_normal((rows, 256)).astype(np.float32)
    runs_before, requests_before, rows_before = batch_metrics(default_server, "mlp")
    logits, label = mlp_answer(infer(default_server, "mlp", "input", large))
    expected_logits, expected_label = reference(large)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(label, expected_label)
    after = batch_metrics(default_server, "mlp")
    assert after == (runs_before + 1, requests_before + 1, rows_before + rows)  # one run, alone
    # Among concurrent small requests too: every one is answered as alone.
    small = [large[index : index + 2] for index in range(0, 16, 2)]
    for batch, response in zip(
        [large, *small], concurrently(default_server, "mlp", "input", [large, *small]), strict=True
    ):
        logits, label = mlp_answer(response)
        np.testing.assert_array_equal(label, reference(batch)[1])


def test_a_model_without_a_batch_dimension_is_never_merged(default_server: LiveServer) -> None:
    rng = np.random.default_rng(5)
    runs_before, requests_before, _ = batch_metrics(default_server, "fixed")
    for _ in range(3):
        arrays = [rng.standard_normal((4, 2)).astype(np.float32) for _ in range(CLIENTS)]
        for array, response in zip(
            arrays, concurrently(default_server, "fixed", "x", arrays), strict=True
        ):
            assert response.status_code == 200, response.text
            [output] = response.json()["outputs"]
            np.testing.assert_array_equal(np.array(output["data"], np.float32), -array.ravel())
    runs, requests, _ = batch_metrics(default_server, "fixed")
    assert runs - runs_before == requests - requests_before == 3 * CLIENTS  # one request each
