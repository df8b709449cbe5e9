"""Smoke test a running Open Inference Protocol v2 server with the stock Triton client.

    python scripts/smoke_client.py --url 127.0.0.1:8000 --model mlp

Checks, against the bundled default-model contract (input FP32 [-1, F]; outputs `logits`
FP32 [-1, C] and `label` INT64 [-1]): server live/ready, model ready, metadata, then one
inference with binary tensors and one with JSON tensors: shapes, dtypes, `label ==
argmax(logits)`, and that both encodings give the same answer. Prints one summary line and
exits 0; on any failure prints `smoke: FAIL: <reason>` to stderr and exits 1. The Dagger
`test` function and tests/images run exactly this (ci/src/onnx_serving/commands.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

BATCH = 4
INPUT_NAME = "input"
OUTPUTS = ("logits", "label")


class SmokeError(Exception):
    """A check failed; the message says which and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeError(message)


def wait_ready(client: httpclient.InferenceServerClient, model: str, timeout_s: float) -> None:
    """Wait (bounded) for server and model readiness, for callers that start a server first."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            if client.is_server_live() and client.is_server_ready():
                if client.is_model_ready(model):
                    return
                last = f"model {model!r} not ready"
            else:
                last = "server not live/ready"
        except (InferenceServerException, OSError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise SmokeError(f"not ready after {timeout_s:g}s: {last}")
        time.sleep(0.25)


def check_metadata(metadata: dict[str, Any], model: str) -> int:
    """Validate the default-model contract; return the feature count F."""
    check(metadata.get("name") == model, f"metadata name {metadata.get('name')!r} != {model!r}")
    inputs = {t["name"]: t for t in metadata.get("inputs", [])}
    outputs = {t["name"]: t for t in metadata.get("outputs", [])}
    check(INPUT_NAME in inputs, f"no input {INPUT_NAME!r} in metadata inputs {sorted(inputs)}")
    spec = inputs[INPUT_NAME]
    check(spec["datatype"] == "FP32", f"input datatype {spec['datatype']!r}, expected FP32")
    shape = [int(d) for d in spec["shape"]]
    check(
        len(shape) == 2 and shape[0] == -1 and shape[1] > 0,
        f"input shape {shape}, expected [-1, F]",
    )
    for name, dtype in (("logits", "FP32"), ("label", "INT64")):
        check(name in outputs, f"no output {name!r} in metadata outputs {sorted(outputs)}")
        check(
            outputs[name]["datatype"] == dtype,
            f"output {name!r} datatype {outputs[name]['datatype']!r}, expected {dtype}",
        )
    return shape[1]


def infer(
    client: httpclient.InferenceServerClient, model: str, batch: np.ndarray, binary: bool
) -> tuple[np.ndarray, np.ndarray]:
    tensor = httpclient.InferInput(INPUT_NAME, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
    result = client.infer(model, [tensor], outputs=wanted, request_id="smoke")
    logits, label = (result.as_numpy(n) for n in OUTPUTS)
    mode = "binary" if binary else "JSON"
    check(logits is not None and label is not None, f"{mode}: missing output(s) {OUTPUTS}")
    assert logits is not None and label is not None
    check(logits.dtype == np.float32, f"{mode}: logits dtype {logits.dtype}, expected float32")
    check(label.dtype == np.int64, f"{mode}: label dtype {label.dtype}, expected int64")
    check(
        logits.ndim == 2 and logits.shape[0] == len(batch),
        f"{mode}: logits shape {logits.shape}, expected ({len(batch)}, C)",
    )
    check(
        label.shape == (len(batch),), f"{mode}: label shape {label.shape}, expected ({len(batch)},)"
    )
    check(bool(np.isfinite(logits).all()), f"{mode}: non-finite logits")
    argmax = logits.argmax(axis=1)
    check(
        bool((label == argmax).all()),
        f"{mode}: label {label.tolist()} != argmax(logits) {argmax.tolist()}",
    )
    return logits, label


def run(url: str, model: str, timeout_s: float) -> str:
    client = httpclient.InferenceServerClient(
        url=url, connection_timeout=timeout_s, network_timeout=timeout_s
    )
    try:
        wait_ready(client, model, timeout_s)
        metadata = client.get_model_metadata(model)
        features = check_metadata(metadata, model)
        batch = np.random.default_rng(0).standard_normal((BATCH, features), dtype=np.float32)
        logits_bin, label_bin = infer(client, model, batch, binary=True)
        logits_json, label_json = infer(client, model, batch, binary=False)
    finally:
        client.close()
    check(bool((label_bin == label_json).all()), "binary and JSON labels differ")
    check(
        bool(np.allclose(logits_bin, logits_json, rtol=1e-5, atol=1e-5)),
        "binary and JSON logits differ",
    )
    providers = metadata.get("execution_providers", "?")
    return (
        f"smoke: OK {url} model={model} batch={BATCH} features={features} "
        f"classes={logits_bin.shape[1]} labels={label_bin.tolist()} providers={providers}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="server address HOST:PORT (no scheme)")
    parser.add_argument("--model", default="mlp", help="model name (default: mlp)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for readiness and per request (default: 30)",
    )
    args = parser.parse_args(argv)
    if "://" in args.url:
        parser.error(f"--url takes HOST:PORT without a scheme, got {args.url!r}")
    try:
        print(run(args.url, args.model, args.timeout))
    except (SmokeError, InferenceServerException, OSError, KeyError, ValueError) as exc:
        print(f"smoke: FAIL: {args.url} model={args.model}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
