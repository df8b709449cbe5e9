"""A row the database refuses costs only that row: its batch's other rows are written.

A client chooses its tensors' shapes; a [2**31, 0] tensor is empty, valid for a model whose
inputs have dynamic dimensions, and its 2**31 rows do not fit the `batch_rows integer` column.
The writer halves a refused batch until the refused row is alone, writes the rest and counts
that row as dropped with reason `refused`. Real `python -m service` and PostgreSQL 15.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import numpy as np
from onnx import TensorProto, helper

from service.inference_log import LogEntry
from service.tensors import TensorSpec
from tests.service.live_server import running_server
from tests.service.postgres import PostgresCluster
from tests.service.test_inference_log import all_dropped, cluster, dropped, wait_until, written

__all__ = ["cluster"]  # the module-scoped PostgreSQL fixture, shared with the log's tests

INFER = "/v2/models/any_shape/infer"


def any_shape_repository(root: Path) -> Path:
    """One model, `any_shape`: FP32 input `x` [b, n] copied to output `y`."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "any_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    (root / "any_shape" / "1").mkdir(parents=True)
    (root / "any_shape" / "1" / "model.onnx").write_bytes(model.SerializeToString())
    return root


def body(request_id: str, shape: list[int]) -> dict[str, object]:
    data = np.zeros(shape, np.float32).reshape(-1).tolist()
    return {
        "id": request_id,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": data}],
    }


def test_a_refused_row_is_dropped_alone_and_its_neighbours_are_written(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database())
    env = {
        "MODEL_REPOSITORY": str(any_shape_repository(tmp_path / "models")),
        "PREDICTION_LOG_URL": url,
    }
    with running_server(env, tmp_path / "server.log") as server:
        wait_until(server, "connected", lambda: server.metric("prediction_log_connected") == 1)
        bodies = [body(f"good-{n}", [2, 3]) for n in range(9)]
        bodies.insert(4, body("too-many-rows", [2**31, 0]))
        # Ten requests well inside the writer's 100 ms wait for company: one batch of ten.
        with httpx.Client(base_url=server.base, timeout=60) as client:
            statuses = [client.post(INFER, json=b).status_code for b in bodies]
        assert all(status < 500 for status in statuses), statuses
        wait_until(server, "9 rows written", lambda: written(server) == 9)
        wait_until(server, "1 row refused", lambda: dropped(server, "refused") == 1)
        assert all_dropped(server) == 1
        assert server.metric("prediction_log_queued") == 0
        assert server.metric("prediction_log_connected") == 1
    rows = cluster.query(url, "SELECT request_id, batch_rows FROM inference_log ORDER BY seq")
    assert [row["request_id"] for row in rows] == [f"good-{n}" for n in range(9)]
    assert {row["batch_rows"] for row in rows} == {2}
    refusals = [line for line in server.log().splitlines() if "refused a row" in line]
    assert len(refusals) == 1 and " ERROR " in refusals[0], server.log()
    assert "int32" in refusals[0]
    assert "describing a request failed" not in server.log()


def test_an_empty_tensor_has_a_digest() -> None:
    # The refused request above: empty, yet described like any other (no hook failure).
    entry = LogEntry("any_shape", 0.0, payloads=False)
    spec = {"x": TensorSpec("x", "FP32", (-1, -1))}
    asyncio.run(entry.add_inputs("e", {"x": np.zeros((2**31, 0), np.float32)}, spec))
    expected = hashlib.sha256(f"x FP32 {2**31},0\n".encode()).digest()
    assert (entry.rows, entry.input_sha256) == (2**31, expected)
