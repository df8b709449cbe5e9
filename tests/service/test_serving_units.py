"""Unit tests of the parts between the settings and a running model: settings at the edges of
their ranges, model names and versions, providers, session options, which models the batcher
serves, error values in messages, JSON log lines."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from service.batching import DirectRunner, batch_limit
from service.errors import NotFound, short_repr
from service.logging_setup import JsonLinesFormatter
from service.metrics import ServerMetrics
from service.registry import ModelRegistry, ServedModel
from service.repository import ModelSource, discover_models
from service.runtime import (
    CPU,
    InferenceExecutor,
    LoadedModel,
    choose_providers,
    load_model,
    session_options,
)
from service.settings import DEFAULT_MAX_BATCH_SIZE, Settings, SettingsError, load_settings
from service.tensors import TensorSpec

# --- settings: the first and last valid value of each range, and one past each end ---

EDGES = [
    ("PORT", "0", "65535", ["-1", "65536"]),
    ("INTRA_OP_THREADS", "1", "1024", ["0", "1025"]),
    ("INFERENCE_WORKERS", "1", "64", ["0", "65"]),
    ("MAX_BATCH_SIZE", "0", "65536", ["-1", "65537"]),
    ("MAX_BATCH_DELAY_MS", "0", "60000", ["-0.5", "60000.5"]),
    ("BODY_TIMEOUT_S", "0.001", "3600", ["0.0009", "3600.5"]),
    ("MAX_BODY_BYTES", "1024", str(2**40), ["1023", str(2**40 + 1)]),
    ("SHUTDOWN_TIMEOUT_S", "0", "3600", ["-1", "3601"]),
]


@pytest.mark.parametrize(("variable", "low", "high", "outside"), EDGES, ids=[e[0] for e in EDGES])
def test_setting_ranges_include_both_ends(
    variable: str, low: str, high: str, outside: list[str]
) -> None:
    field = variable.lower()
    for value in (low, high):
        assert getattr(load_settings({variable: value}), field) == float(value)
    for value in outside:
        with pytest.raises(SettingsError, match=f"{variable}={value!r}"):
            load_settings({variable: value})


def test_provider_list_keeps_order_drops_repeats_and_ends_with_cpu() -> None:
    def providers(raw: str) -> tuple[str, ...]:
        return tuple(load_settings({"EXECUTION_PROVIDERS": raw}).execution_providers)

    assert providers("cpu, cuda") == (CPU, "CUDAExecutionProvider")
    assert providers("cuda,CUDA,openvino") == (
        "CUDAExecutionProvider",
        "OpenVINOExecutionProvider",
        CPU,
    )
    with pytest.raises(SettingsError, match="unknown provider 'tpu'"):
        providers("cuda,tpu")


# --- model files: names and versions ---


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("relative", "name"),
    [("scorer/3/model.onnx", "scorer"), ("any/resnet.onnx", "resnet"), ("x/model.onnx", "model")],
)
def test_model_path_is_named_after_its_file_or_model_folder(
    tmp_path: Path, relative: str, name: str
) -> None:
    [source] = discover_models(Settings(model_path=touch(tmp_path / relative)))
    assert (source.name, source.version) == (name, "1")


def test_repository_skips_hidden_folders_and_version_0(tmp_path: Path) -> None:
    for relative in ("m/0/model.onnx", "m/7/model.onnx", ".cache/1/model.onnx", "m/2/other.onnx"):
        touch(tmp_path / relative)
    sources = discover_models(Settings(model_repository=tmp_path))
    assert [(s.name, s.version) for s in sources] == [("m", "7")]


def loaded(name: str, version: str, *specs: TensorSpec) -> LoadedModel:
    inputs = {spec.name: spec for spec in specs if spec.name.startswith("in")}
    outputs = {spec.name: spec for spec in specs if not spec.name.startswith("in")}
    return LoadedModel(name, version, None, inputs, outputs, [CPU])


def served(name: str, version: str) -> ServedModel:
    model = loaded(name, version)
    runner = DirectRunner(model, InferenceExecutor(1), ServerMetrics())
    return ServedModel(model, runner, 0, 0.0)


def test_registry_orders_versions_as_numbers() -> None:
    registry = ModelRegistry([served("m", "10"), served("m", "9"), served("other", "1")])
    assert registry.versions("m") == ["9", "10"]
    assert registry.get("m").version == "10"  # the latest, not the last as text
    assert registry.get("m", "").version == "10"
    assert registry.get("m", "9").version == "9"
    with pytest.raises(NotFound, match="unknown version '8' of model 'm' \\(available: 9, 10\\)"):
        registry.get("m", "8")
    with pytest.raises(NotFound, match="unknown model 'x'"):
        registry.get("x")
    assert registry.versions("x") == []
    assert sorted((s.name, s.version) for s in registry.all()) == [
        ("m", "10"),
        ("m", "9"),
        ("other", "1"),
    ]


# --- which models the dynamic batcher serves ---

BATCHED = TensorSpec("in", "FP32", (-1, 4))


@pytest.mark.parametrize(
    ("specs", "limit"),
    [
        ((BATCHED, TensorSpec("out", "FP32", (-1,))), 8),
        ((BATCHED, TensorSpec("out", "FP32", (1, 4))), 0),  # output of a fixed batch
        ((TensorSpec("in", "FP32", (2, 4)), TensorSpec("out", "FP32", (-1,))), 0),
        ((BATCHED, TensorSpec("out", "FP32", ())), 0),  # a scalar has no batch dimension
    ],
)
def test_batching_needs_a_batch_dimension_everywhere(
    specs: tuple[TensorSpec, ...], limit: int
) -> None:
    model = loaded("m", "1", *specs)
    assert batch_limit(model, 8) == limit
    assert batch_limit(model, None) == (DEFAULT_MAX_BATCH_SIZE if limit else 0)  # unset
    assert batch_limit(model, 1) == 0  # MAX_BATCH_SIZE=1: nothing to merge
    assert batch_limit(model, 0) == 0


# --- onnxruntime: providers and session options ---


def test_providers_unavailable_here_fall_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    available = ort.get_available_providers()
    gpus = ("CUDAExecutionProvider", "ROCMExecutionProvider")
    missing = next(name for name in gpus if name not in available)
    with caplog.at_level(logging.WARNING):
        assert choose_providers([missing, CPU]) == [CPU]
    assert f"{missing} was requested" in caplog.text
    assert choose_providers([CPU]) == [CPU]
    extra = next((p for p in available if p != CPU), None)
    if extra is not None:  # an accelerator this build has: kept, CPU still last
        assert choose_providers([CPU, extra]) == [extra, CPU]


def test_session_options_keep_threads_from_competing() -> None:
    options = session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# --- client values in error messages, log lines ---


def test_values_in_messages_are_cut_short() -> None:
    assert short_repr("abc") == "'abc'"
    assert len(short_repr("x" * 500)) <= 80
    assert short_repr("abcdefgh", limit=10) == "'abcdefgh'"  # exactly the limit: shown whole
    assert short_repr("abcdefghi", limit=10) == "'abcdef..."


def test_json_log_lines_carry_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("service", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
        record.exc_info = sys.exc_info()
    entry = orjson.loads(JsonLinesFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "service"
    assert entry["message"] == "failed x"
    assert entry["time"].endswith("+00:00")
    assert "RuntimeError: boom" in entry["exception"]
    plain = logging.LogRecord("service", logging.INFO, __file__, 1, "ok", (), None)
    assert "exception" not in orjson.loads(JsonLinesFormatter().format(plain))


def test_direct_runner_returns_the_requested_outputs_in_order(model_repository: Path) -> None:
    model = load_model(ModelSource("mlp", "1", model_repository / "mlp/1/model.onnx"), [CPU], 1)
    executor = InferenceExecutor(1)
    runner = DirectRunner(model, executor, ServerMetrics())
    batch = np.zeros((2, 256), dtype=np.float32)
    answer = asyncio.run(runner.infer({"input": batch}, ["label", "logits"]))
    executor.shutdown()
    assert list(answer) == ["label", "logits"]
    assert answer["logits"].shape == (2, 10)
