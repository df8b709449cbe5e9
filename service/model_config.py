"""Model metadata and Triton-style model configuration documents."""

from __future__ import annotations

from service.registry import ServedModel
from service.runtime import LoadedModel
from service.tensors import TensorSpec

PLATFORM = "onnxruntime_onnx"


def model_metadata(model: LoadedModel, versions: list[str]) -> dict[str, object]:
    """``GET /v2/models/{m}``: the signature plus the providers the session really uses."""
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in model.inputs.values()],
        "outputs": [spec.metadata() for spec in model.outputs.values()],
        "execution_providers": model.providers,
    }


def _config_tensor(spec: TensorSpec, batched: bool) -> dict[str, object]:
    datatype = "STRING" if spec.datatype == "BYTES" else spec.datatype
    return {
        "name": spec.name,
        "data_type": f"TYPE_{datatype}",
        # With max_batch_size > 0 Triton's dims leave out the batch dimension.
        "dims": list(spec.shape[1:] if batched else spec.shape),
    }


def model_config(served: ServedModel, hard_cap: bool) -> dict[str, object]:
    """``GET /v2/models/{m}/config``, the subset of Triton's config that clients read.

    ``max_batch_size`` is the rows of a merged run when the dynamic batcher serves this model,
    else 0 (then ``dims`` are the full shapes, and any batch size the model accepts is fine).
    With batching, parameter ``requests_over_max_batch_size`` says what a larger request
    gets: ``refused`` (400, Triton's rule: MAX_BATCH_SIZE set) or ``run_alone`` (the default).
    Parameter ``sha256`` names the model file served (Triton's string parameters, so the
    document keeps the shape of Triton's ModelConfig).
    """
    model = served.model
    batched = served.max_batch_size > 0
    config: dict[str, object] = {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": served.max_batch_size,
        "input": [_config_tensor(spec, batched) for spec in model.inputs.values()],
        "output": [_config_tensor(spec, batched) for spec in model.outputs.values()],
        "instance_group": [
            {"kind": "KIND_GPU" if "CUDAExecutionProvider" in model.providers else "KIND_CPU"}
        ],
    }
    parameters: dict[str, object] = {"sha256": {"string_value": model.sha256}}
    if batched:
        delay_us = int(served.max_batch_delay_ms * 1000)
        config["dynamic_batching"] = {"max_queue_delay_microseconds": delay_us}
        larger = "refused" if hard_cap else "run_alone"
        parameters["requests_over_max_batch_size"] = {"string_value": larger}
    config["parameters"] = parameters
    return config
