"""Smoke test a running Open Inference Protocol v2 server with the stock Triton client.

    python -m onnx_serving.smoke --url 127.0.0.1:8000 [--model NAME ...] [--models-label LABEL]

Works for any model with tensor inputs: the models come from `--model` or the server's
repository index, and each request is built from the model's own metadata (examples.py).
Checks: server live and ready, every model ready; then one inference
with binary tensors and one with JSON tensors asking for every output: the request id echoed,
each output present in the encoding asked for, with its declared datatype and shape, and both
encodings giving the same answer. With --models-label (the image's io.onnx-serving.models label),
the repository index must list exactly those model versions with those sha256 digests.
Prints one `smoke: OK` line per model (and one for the label) and exits 0; on any
failure prints `smoke: FAIL: <reason>` to stderr and exits 1. The Dagger checks, `publish`,
scripts/ and tests/images run exactly this.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from onnx_serving.examples import ExampleInput, MetadataError, example_inputs, output_shape_fits
from onnx_serving.models import parse_models_label

BATCH = 2
REQUEST_ID = "smoke"  # the server must echo it
NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


class SmokeError(Exception):
    """A check failed; the message says which and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeError(message)


def wait_ready(client: httpclient.InferenceServerClient, timeout_s: float) -> None:
    """Wait (bounded) for the server to be live and ready: callers may have just started it."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            if client.is_server_live() and client.is_server_ready():
                return
            last = "server not live/ready"
        except (InferenceServerException, OSError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise SmokeError(f"not ready after {timeout_s:g}s: {last}")
        time.sleep(0.25)


def served_models(client: httpclient.InferenceServerClient) -> list[str]:
    """The names in the server's repository index (POST /v2/repository/index)."""
    index = client.get_model_repository_index()
    names = sorted({str(entry["name"]) for entry in index})
    check(bool(names), "the repository index lists no model")
    return names


def to_array(example: ExampleInput) -> np.ndarray:
    values: Any = example.values
    if example.datatype == "BYTES":
        values = [v.encode() for v in values]
    return np.array(values, dtype=NUMPY_TYPES[example.datatype]).reshape(example.shape)


def infer(
    client: httpclient.InferenceServerClient,
    model: str,
    metadata: dict[str, Any],
    examples: list[ExampleInput],
    binary: bool,
) -> dict[str, np.ndarray]:
    """One request with every input, asking for every output; checks what comes back."""
    tensors = []
    for example in examples:
        tensor = httpclient.InferInput(example.name, example.shape, example.datatype)
        tensor.set_data_from_numpy(to_array(example), binary_data=binary)
        tensors.append(tensor)
    outputs = metadata.get("outputs") or []
    wanted = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in outputs]
    result = client.infer(model, tensors, outputs=wanted, request_id=REQUEST_ID)
    mode = "binary" if binary else "JSON"
    answered_id = result.get_response().get("id")
    check(answered_id == REQUEST_ID, f"{mode}: response id {answered_id!r} != {REQUEST_ID!r}")
    arrays: dict[str, np.ndarray] = {}
    for spec in outputs:
        array = result.as_numpy(spec["name"])
        check(array is not None, f"{mode}: output {spec['name']!r} missing")
        assert array is not None
        answered = result.get_output(spec["name"]) or {}
        came_binary = "binary_data_size" in (answered.get("parameters") or {})
        check(came_binary == binary, f"{mode}: output {spec['name']!r} came in the wrong encoding")
        check(
            answered.get("datatype") == spec["datatype"],
            f"{mode}: output {spec['name']!r} is {answered.get('datatype')}, "
            f"metadata says {spec['datatype']}",
        )
        check(
            output_shape_fits(spec["shape"], list(array.shape)),
            f"{mode}: output {spec['name']!r} has shape {list(array.shape)}, "
            f"metadata says {spec['shape']}",
        )
        arrays[spec["name"]] = array
    return arrays


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, rtol=1e-5, atol=1e-5, equal_nan=True))
    if a.dtype == object:  # BYTES: bytes from binary, str from JSON
        return [_text(x) for x in a.reshape(-1)] == [_text(x) for x in b.reshape(-1)]
    return a.shape == b.shape and bool((a == b).all())


def _text(element: object) -> str:
    return element.decode() if isinstance(element, bytes) else str(element)


def smoke_model(client: httpclient.InferenceServerClient, model: str) -> str:
    check(client.is_model_ready(model), f"model {model!r} is not ready")
    metadata: dict[str, Any] = client.get_model_metadata(model)
    check(metadata.get("name") == model, f"metadata name {metadata.get('name')!r} != {model!r}")
    examples = example_inputs(metadata, BATCH)
    binary = infer(client, model, metadata, examples, binary=True)
    json = infer(client, model, metadata, examples, binary=False)
    for name, array in binary.items():
        check(same(array, json[name]), f"output {name!r} differs between binary and JSON")
    shapes = ", ".join(f"{n}{list(a.shape)}" for n, a in binary.items())
    providers = metadata.get("execution_providers", "?")
    return f"model={model} outputs={shapes} providers={providers}"


def check_models_label(client: httpclient.InferenceServerClient, label: str) -> str:
    """The repository index names the label's model versions, each with the label's sha256."""
    labelled = {(m.name, str(m.version), m.sha256) for m in parse_models_label(label)}
    index = client.get_model_repository_index()
    served = {(str(e["name"]), str(e["version"]), str(e.get("sha256"))) for e in index}

    def shown(entries: set[tuple[str, str, str]]) -> str:
        return ", ".join(f"{n}/{v}@sha256:{h}" for n, v, h in sorted(entries)) or "nothing"

    check(
        served == labelled,
        f"the image's models label and the server disagree: label only {shown(labelled - served)}"
        f"; server only {shown(served - labelled)}",
    )
    return f"models={len(labelled)} versions match the image's label, sha256 included"


def run(url: str, models: list[str], timeout_s: float, models_label: str = "") -> list[str]:
    client = httpclient.InferenceServerClient(
        url=url, connection_timeout=timeout_s, network_timeout=timeout_s
    )
    try:
        wait_ready(client, timeout_s)
        lines = [
            f"smoke: OK {url} {smoke_model(client, model)}"
            for model in models or served_models(client)
        ]
        if models_label:
            lines.append(f"smoke: OK {url} {check_models_label(client, models_label)}")
        return lines
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="server address HOST:PORT (no scheme)")
    parser.add_argument(
        "--model", action="append", default=[], help="model to check (default: every served one)"
    )
    parser.add_argument(
        "--models-label",
        default="",
        help="the image's io.onnx-serving.models label: the server must serve exactly that",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for readiness and per request (default: 30)",
    )
    args = parser.parse_args(argv)
    if "://" in args.url:
        parser.error(f"--url takes HOST:PORT without a scheme, got {args.url!r}")
    shown = ",".join(args.model) or "all"
    try:
        for line in run(args.url, args.model, args.timeout, args.models_label):
            print(line)
    except (SmokeError, InferenceServerException, MetadataError, OSError, ValueError) as exc:
        print(f"smoke: FAIL: {args.url} model={shown}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
