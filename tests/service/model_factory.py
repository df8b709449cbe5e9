"""Small ONNX models for tests: an identity model with one input and output per datatype, and
a lookup model that ONNX Runtime refuses to run for some input values; the default MLP comes
from tests/models_for_tests.py (never from the repository's models/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models_for_tests import MLP, mlp_model, write_mlp

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = mlp_model()  # the default MLP, written by the tests (read only)

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
COLUMNS = 2  # identity tensors are [batch, 2]
# lookup: row i of the output is LOOKUP_TABLE[index[i]]; an index outside it fails the run.
LOOKUP_TABLE = np.arange(4 * COLUMNS, dtype=np.float32).reshape(4, COLUMNS)


def identity_model() -> onnx.ModelProto:
    """Inputs ``in_<DATATYPE>`` [batch, 2] copied to outputs ``out_<DATATYPE>``."""
    inputs, outputs, nodes = [], [], []
    for datatype, onnx_type in ONNX_TYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{datatype}", onnx_type, ["b", COLUMNS]))
        outputs.append(helper.make_tensor_value_info(f"out_{datatype}", onnx_type, ["b", COLUMNS]))
        nodes.append(helper.make_node("Identity", [f"in_{datatype}"], [f"out_{datatype}"]))
    return _finish(helper.make_graph(nodes, "identity", inputs, outputs))


def lookup_model() -> onnx.ModelProto:
    """Input ``index`` INT64 [batch] -> output ``row`` FP32 [batch, 2] (a Gather)."""
    table = numpy_helper.from_array(LOOKUP_TABLE, "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["row"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["b"])],
        [helper.make_tensor_value_info("row", TensorProto.FLOAT, ["b", COLUMNS])],
        [table],
    )
    return _finish(graph)


def fixed_shape_model() -> onnx.ModelProto:
    """Input ``x`` FP32 [4, 2] -> output ``y`` = -x: no batch dimension, so never merged."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, COLUMNS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, COLUMNS])],
    )
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def sample_arrays(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One [rows, 2] array per datatype with values that exercise each type's range."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    shape = (rows, COLUMNS)
    for datatype in ONNX_TYPES:
        if datatype == "BOOL":
            arrays[datatype] = rng.integers(0, 2, shape).astype(bool)
        elif datatype == "BYTES":
            words = ["", "héllo", "ünïcode ✓", "a b", "x" * 40]
            flat = [words[i % len(words)] + str(i) for i in range(rows * COLUMNS)]
            arrays[datatype] = np.array(flat, dtype=object).reshape(shape)
        elif datatype.startswith(("INT", "UINT")):
            dtype = np.dtype(datatype.lower())
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
            if values.size:  # extremes survive the round trip
                values.flat[0] = info.max
                values.flat[-1] = info.min
            arrays[datatype] = values
        else:
            floats = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype]
            arrays[datatype] = (rng.standard_normal(shape) * 1000).astype(floats)
    return arrays


def make_repository(root: Path) -> Path:
    """mlp version 1 (the default MLP), identity versions 1 and 3, lookup version 1."""
    write_mlp(root / MLP / "1" / "model.onnx")
    data = identity_model().SerializeToString()
    for version in ("1", "3"):
        (root / "identity" / version).mkdir(parents=True)
        (root / "identity" / version / "model.onnx").write_bytes(data)
    (root / "lookup" / "1").mkdir(parents=True)
    (root / "lookup" / "1" / "model.onnx").write_bytes(lookup_model().SerializeToString())
    return root
