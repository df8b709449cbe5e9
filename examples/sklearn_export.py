"""From a trained scikit-learn model to a model repository the server (and an image) serves.

    python examples/sklearn_export.py --output my-models      # my-models/iris/1/model.onnx
    ./scripts/build.sh --models my-models cpu && ./scripts/test-image.sh onnx-serving:cpu

A logistic-regression classifier on scikit-learn's bundled iris data, with string labels
(`setosa`, ...), converted with skl2onnx. `zipmap=False` makes the probabilities a plain
FP32 tensor: the default ZipMap output (a sequence of maps) is not a tensor, and the server
refuses such a model at startup with a line saying so. Outputs: `label` (BYTES, one string
per row) and `probabilities` (FP32, one row of 3 per input row). docs/MODELS.md walks through it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

MODEL_NAME = "iris"
# Pinned so that a newer onnx or skl2onnx writes a model every supported onnxruntime loads.
TARGET_OPSET = 17


def train() -> LogisticRegression:
    iris = load_iris()
    labels = np.array(iris.target_names)[iris.target]  # strings, not class numbers
    return LogisticRegression(max_iter=1000).fit(iris.data.astype(np.float32), labels)


def export(model: LogisticRegression, output: Path, zipmap: bool = False) -> Path:
    """Write `output/iris/1/model.onnx`; the input is `input`, FP32 [-1, 4]."""
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": zipmap}},
        target_opset=TARGET_OPSET,
    )
    path = output / MODEL_NAME / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_model.SerializeToString())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, required=True, help="model repository folder")
    parser.add_argument(
        "--zipmap", action="store_true", help="keep skl2onnx's ZipMap output (not servable)"
    )
    args = parser.parse_args()
    print(f"wrote {export(train(), args.output, zipmap=args.zipmap)}")


if __name__ == "__main__":
    main()
