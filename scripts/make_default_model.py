"""Generate the bundled default model ``models/mlp/1/model.onnx``.

An MLP classifier: input ``input`` FP32 [N, 256] -> Gemm+Relu to width 1024 -> one
weight-tied 1024x1024 Gemm+Relu block applied 5 times -> ``logits`` FP32 [N, 10] and
``label`` INT64 [N] (ArgMax over the logits). The batch
dimension is dynamic. Weights come from a fixed seed, and the IR version and opset are pinned,
so the output bytes are identical on every run (a test checks this, and that a file of models/
made by this script is those bytes). The tests write their own copy with `model_bytes()`
(tests/models_for_tests.py): they never read models/, which a team replaces with its own.

Compute per row (~11 MFLOP), measured with onnxruntime 1.32 on ONE thread of this project's
2-vCPU build machine: about 0.15 ms per row at batch 32 (~6,600 rows/s) and 0.35 ms per call
at batch 1; with 2 intra-op threads 0.08 ms per row at batch 32. That is enough work per row
that serving overhead can be measured against it. Size: ~5.3 MB.

    python scripts/make_default_model.py [--output models/mlp/1/model.onnx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20240611
INPUT_WIDTH = 256
HIDDEN_WIDTH = 1024
# The hidden block is weight-tied and applied this many times: more compute per row
# without a bigger file (the model must stay well under 10 MB).
HIDDEN_REPEATS = 5
CLASSES = 10
# Pinned so that a newer `onnx` package writes the same bytes.
IR_VERSION = 9
OPSET = 17
PRODUCER = "onnx-serving/make_default_model.py"  # the graph's producer_name
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "models" / "mlp" / "1" / "model.onnx"


def _dense(rng: np.random.RandomState, fan_in: int, fan_out: int, name: str) -> list[TensorProto]:
    """He-initialised weights and small biases, stored as ONNX initializers."""
    weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)).astype(np.float32)
    bias = rng.normal(0.0, 0.01, size=(fan_out,)).astype(np.float32)
    return [
        numpy_helper.from_array(weight, f"{name}_weight"),
        numpy_helper.from_array(bias, f"{name}_bias"),
    ]


def build_model(seed: int = SEED) -> onnx.ModelProto:
    """Build the MLP graph deterministically from ``seed``."""
    # The legacy RandomState stream is frozen by numpy (NEP 19), unlike Generator's, so
    # a future numpy still draws the same weights.
    rng = np.random.RandomState(seed)
    initializers: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    initializers += _dense(rng, INPUT_WIDTH, HIDDEN_WIDTH, "embed")
    initializers += _dense(rng, HIDDEN_WIDTH, HIDDEN_WIDTH, "block")
    initializers += _dense(rng, HIDDEN_WIDTH, CLASSES, "head")
    nodes.append(helper.make_node("Gemm", ["input", "embed_weight", "embed_bias"], ["embed"]))
    nodes.append(helper.make_node("Relu", ["embed"], ["hidden0"]))
    previous = "hidden0"
    for step in range(1, HIDDEN_REPEATS + 1):
        linear, activated = f"block{step}_linear", f"hidden{step}"
        nodes.append(helper.make_node("Gemm", [previous, "block_weight", "block_bias"], [linear]))
        nodes.append(helper.make_node("Relu", [linear], [activated]))
        previous = activated
    nodes.append(helper.make_node("Gemm", [previous, "head_weight", "head_bias"], ["logits"]))
    nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))

    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", INPUT_WIDTH])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def model_bytes(seed: int = SEED) -> bytes:
    """The serialized model; identical for identical seeds."""
    data: bytes = build_model(seed).SerializeToString()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write")
    args = parser.parse_args()
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    data = model_bytes()
    output.write_bytes(data)
    print(f"wrote {output} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
