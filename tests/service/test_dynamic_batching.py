"""Dynamic batching: merged runs give the same answers as unmerged ones, split back exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.utils as triton_utils

from tests.service.conftest import BATCH_ROWS
from tests.service.live_server import LiveServer
from tests.service.model_factory import LOOKUP_TABLE, ONNX_TYPES, sample_arrays
from tests.service.responses import decode_response, request_body

THREADS = BATCH_ROWS


def mlp_infer(server: LiveServer, batch: np.ndarray) -> dict[str, np.ndarray]:
    client = triton.InferenceServerClient(server.url)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("mlp", [tensor])
    return {name: result.as_numpy(name) for name in ("logits", "label")}


def identity_infer(server: LiveServer, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    client = triton.InferenceServerClient(server.url)
    inputs = []
    for datatype, array in arrays.items():
        tensor = triton.InferInput(f"in_{datatype}", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("identity", inputs)
    return {datatype: result.as_numpy(f"out_{datatype}") for datatype in ONNX_TYPES}


def batch_counts(server: LiveServer, model: str) -> tuple[float, float]:
    labels = f'model="{model}"'
    return (
        server.metric("inference_batch_requests_count", labels),
        server.metric("inference_batch_requests_sum", labels),
    )


def test_config_advertises_batching(batching_server: LiveServer) -> None:
    config = triton.InferenceServerClient(batching_server.url).get_model_config("mlp")
    assert config["max_batch_size"] == BATCH_ROWS
    assert config["input"][0]["dims"] == [256]
    assert "dynamic_batching" in config


def test_concurrent_requests_merge_and_match_unbatched(
    unbatched_server: LiveServer, batching_server: LiveServer
) -> None:
    rows = np.random.default_rng(5).standard_normal((BATCH_ROWS * 4, 1, 256)).astype(np.float32)
    runs_before, requests_before = batch_counts(batching_server, "mlp")
    with ThreadPoolExecutor(THREADS) as pool:
        batched = list(pool.map(lambda row: mlp_infer(batching_server, row), rows))
    runs_after, requests_after = batch_counts(batching_server, "mlp")
    # Every run held exactly BATCH_ROWS single-row requests: 4 runs for 32 requests.
    assert requests_after - requests_before == len(rows)
    assert runs_after - runs_before == len(rows) / BATCH_ROWS
    for row, answer in zip(rows, batched, strict=True):
        alone = mlp_infer(unbatched_server, row)
        np.testing.assert_allclose(answer["logits"], alone["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(answer["label"], alone["label"])


@pytest.mark.parametrize("row_counts", [(1, 2, 3, 2), (4, 4)], ids=["1-2-3-2", "4-4"])
def test_mixed_sizes_and_datatypes_split_back_exactly(
    batching_server: LiveServer, row_counts: tuple[int, ...]
) -> None:
    assert sum(row_counts) == BATCH_ROWS
    requests = [sample_arrays(rows, seed=index) for index, rows in enumerate(row_counts)]
    runs_before, _ = batch_counts(batching_server, "identity")
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda arrays: identity_infer(batching_server, arrays), requests))
    assert batch_counts(batching_server, "identity")[0] - runs_before == 1  # one merged run
    for sent, received in zip(requests, answers, strict=True):
        for datatype, array in sent.items():
            got = received[datatype]
            if datatype == "BYTES":
                assert [item.decode() for item in got.flat] == list(array.flat)
            else:
                np.testing.assert_array_equal(got, array, err_msg=datatype)


def test_each_merged_request_gets_the_outputs_it_asked_for(batching_server: LiveServer) -> None:
    """Single-row requests that merge into one run, each asking for two outputs of its own
    in its own order (no request's choice covers another's), as JSON or binary."""
    names = [f"out_{datatype}" for datatype in ONNX_TYPES]
    wanted = [[names[(index + 1) % len(names)], names[index]] for index in range(BATCH_ROWS)]
    sent = [sample_arrays(rows=1, seed=index) for index in range(BATCH_ROWS)]

    def send(index: int) -> httpx.Response:
        body, headers = request_body(
            {f"in_{datatype}": (datatype, array) for datatype, array in sent[index].items()},
            binary_inputs={"in_BYTES", "in_FP16"} if index % 2 else set(),
            outputs=[{"name": name} for name in wanted[index]],
            parameters={"binary_data_output": index % 3 == 0},
        )
        url = f"{batching_server.base}/v2/models/identity/infer"
        return httpx.post(url, content=body, headers=headers, timeout=60)

    runs_before, requests_before = batch_counts(batching_server, "identity")
    with ThreadPoolExecutor(BATCH_ROWS) as pool:
        responses = list(pool.map(send, range(BATCH_ROWS)))
    runs_after, requests_after = batch_counts(batching_server, "identity")
    assert (runs_after - runs_before, requests_after - requests_before) == (1, BATCH_ROWS)
    for index, response in enumerate(responses):
        received = decode_response(response)
        assert [name for name, _, _ in received] == wanted[index]
        for name, array, binary in received:
            assert binary == (index % 3 == 0), name
            np.testing.assert_array_equal(array, sent[index][name.removeprefix("out_")])


def lookup(server: LiveServer, index: int) -> httpx.Response:
    body = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [index]}]}
    return httpx.post(f"{server.base}/v2/models/lookup/infer", json=body, timeout=60)


def test_one_failing_request_does_not_fail_its_merged_batch(batching_server: LiveServer) -> None:
    """Index 99 makes ONNX Runtime refuse the merged run; the others still get answers."""
    indexes = [0, 1, 2, 99, 3, 1, 2, 0]
    assert len(indexes) == BATCH_ROWS  # the batch runs only once all of them are queued
    requests_before = batch_counts(batching_server, "lookup")[1]
    with ThreadPoolExecutor(len(indexes)) as pool:
        responses = list(pool.map(lambda index: lookup(batching_server, index), indexes))
    for index, response in zip(indexes, responses, strict=True):
        if index == 99:
            assert response.status_code == 400, response.text
            assert "idx=99" in response.json()["error"]
        else:
            assert response.status_code == 200, response.text
            [output] = response.json()["outputs"]
            assert output["data"] == LOOKUP_TABLE[index].tolist()
    # The good ones ran (alone, after the merged run failed); the bad one never succeeded.
    assert batch_counts(batching_server, "lookup")[1] - requests_before == BATCH_ROWS - 1


def test_request_larger_than_an_explicit_max_batch_size_is_refused(
    unbatched_server: LiveServer, batching_server: LiveServer
) -> None:
    """MAX_BATCH_SIZE set is a hard cap, as in Triton (the default cap is not: see
    test_batching_defaults.py)."""
    rows = np.zeros((BATCH_ROWS + 1, 256), dtype=np.float32)
    with pytest.raises(triton_utils.InferenceServerException) as refused:
        mlp_infer(batching_server, rows)
    assert refused.value.status() == "400"
    message = refused.value.message()
    assert f"{BATCH_ROWS + 1} rows" in message and f"MAX_BATCH_SIZE={BATCH_ROWS}" in message
    assert mlp_infer(unbatched_server, rows)["label"].shape == (BATCH_ROWS + 1,)  # any size
    assert mlp_infer(batching_server, rows[:BATCH_ROWS])["label"].shape == (BATCH_ROWS,)


def test_inputs_of_different_rows_are_answered_as_without_batching(
    unbatched_server: LiveServer, eager_batching_server: LiveServer
) -> None:
    """The model accepts inputs whose first dimensions differ: so must the batcher (it runs
    such a request alone, and has nothing to split)."""
    sent = sample_arrays(rows=2, seed=1)
    sent["FP32"] = sample_arrays(rows=3, seed=2)["FP32"]
    body, headers = request_body(
        {f"in_{datatype}": (datatype, array) for datatype, array in sent.items()}, set()
    )
    for live in (unbatched_server, eager_batching_server):
        url = f"{live.base}/v2/models/identity/infer"
        received = decode_response(httpx.post(url, content=body, headers=headers, timeout=60))
        for name, array, _ in received:
            np.testing.assert_array_equal(array, sent[name.removeprefix("out_")], err_msg=name)
