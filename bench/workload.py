"""The one request mix every contender gets: the same model, the same input rows.

Bodies are built here once per batch size so that every server receives byte-identical
tensors, and responses are decoded here so that correctness is checked the same way for
every contender before it is timed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models" / "mlp" / "1" / "model.onnx"
MODEL_NAME = "mlp"
LABEL_OUTPUT = "label"
# Fixed seed: the same rows in every run, so results and label checks are reproducible.
INPUT_SEED = 20240601


class BenchError(RuntimeError):
    """A benchmark could not run or a contender answered wrongly."""


@dataclass(frozen=True)
class ModelSpec:
    """What the request bodies need to know about the served model."""

    path: Path
    input_name: str
    features: int


def single_thread_session(model: Path) -> ort.InferenceSession:
    """An ORT session on one core: the budget every contender gets."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def read_model_spec(model: Path) -> ModelSpec:
    if not model.is_file():
        raise BenchError(f"model file not found: {model}")
    first_input = single_thread_session(model).get_inputs()[0]
    features = first_input.shape[-1]
    if not isinstance(features, int):
        raise BenchError(f"model input {first_input.name!r} needs a fixed last dimension")
    return ModelSpec(path=model, input_name=first_input.name, features=features)


def make_rows(spec: ModelSpec, batch: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(INPUT_SEED)
    return rng.standard_normal((batch, spec.features)).astype(np.float32)


def reference_labels(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> list[int]:
    """Labels from ONNX Runtime in-process: what every server must answer."""
    outputs = single_thread_session(spec.path).run([LABEL_OUTPUT], {spec.input_name: rows})
    return [int(v) for v in np.asarray(outputs[0]).reshape(-1)]


def oip_json_body(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> bytes:
    """Open Inference Protocol v2 JSON request (accepted by this server and MLServer)."""
    request = {
        "inputs": [
            {
                "name": spec.input_name,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.reshape(-1),
            }
        ]
    }
    return orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY)


def oip_binary_body(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> tuple[bytes, int]:
    """Triton binary-extension request: JSON header, then the raw little-endian tensor.

    Outputs are requested in binary too, as `tritonclient` does by default. Returns the body
    and the JSON header length (the Inference-Header-Content-Length value).
    """
    raw = rows.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": spec.input_name,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    header_bytes = orjson.dumps(header)
    return header_bytes + raw, len(header_bytes)


def plain_json_body(rows: npt.NDArray[np.float32]) -> bytes:
    """The ad-hoc `{"data": [[...], ...]}` body of the naive app and LitServe."""
    return orjson.dumps({"data": rows}, option=orjson.OPT_SERIALIZE_NUMPY)


def labels_from_oip_json(body: bytes) -> list[int]:
    return _oip_label(json.loads(body))


def labels_from_oip_binary(body: bytes, header_length: int | None) -> list[int]:
    """Decode a binary-extension response (header length from its response header)."""
    if header_length is None:
        return labels_from_oip_json(body)
    header: dict[str, Any] = json.loads(body[:header_length])
    offset = header_length
    for output in header.get("outputs", []):
        size = output.get("parameters", {}).get("binary_data_size")
        if output["name"] == LABEL_OUTPUT:
            if size is None:
                return [int(v) for v in np.asarray(output["data"]).reshape(-1)]
            if output["datatype"] != "INT64":
                raise BenchError(f"label output has datatype {output['datatype']!r}, not INT64")
            count = size // 8
            return list(struct.unpack_from(f"<{count}q", body, offset))
        offset += size or 0
    raise BenchError(f"no {LABEL_OUTPUT!r} output in response header {header!r}")


def labels_from_plain_json(body: bytes) -> list[int]:
    decoded: dict[str, Any] = json.loads(body)
    return [int(v) for v in np.asarray(decoded[LABEL_OUTPUT]).reshape(-1)]


def _oip_label(response: dict[str, Any]) -> list[int]:
    for output in response.get("outputs", []):
        if output.get("name") == LABEL_OUTPUT:
            return [int(v) for v in np.asarray(output["data"]).reshape(-1)]
    raise BenchError(f"no {LABEL_OUTPUT!r} output in response {str(response)[:200]}")
