"""Unit tests: settings parsing, CPU sizing from affinity and cgroups, the default model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.cpus import cgroup_cpu_quota, usable_cpu_count
from service.repository import ModelSourceError, discover_models
from service.settings import Settings, SettingsError, load_settings
from tests.service.model_factory import DEFAULT_MODEL, REPO


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.execution_providers == ("CPUExecutionProvider",)
    assert not settings.batching_enabled


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "PORT": " 9000 ",
            "EXECUTION_PROVIDERS": "CUDA, cpu",
            "INTRA_OP_THREADS": "3",
            "MAX_BATCH_SIZE": "16",
            "MAX_BATCH_DELAY_MS": "1.5",
            "LOG_LEVEL": "WARNING",
            "MODEL_SHA256": "A" * 64,
        }
    )
    assert settings.port == 9000
    assert settings.execution_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert settings.intra_op_threads == 3
    assert settings.batching_enabled and settings.max_batch_delay_ms == 1.5
    assert settings.log_level == "warning"
    assert settings.model_sha256 == "a" * 64


def test_gpu_only_provider_list_keeps_cpu_fallback() -> None:
    providers = load_settings({"EXECUTION_PROVIDERS": "cuda"}).execution_providers
    assert providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "70000"),
        ("INTRA_OP_THREADS", "0"),
        ("MAX_INFLIGHT", "many"),
        ("MAX_BODY_BYTES", "10"),
        ("MAX_BATCH_DELAY_MS", "-1"),
        ("EXECUTION_PROVIDERS", ","),
        ("LOG_LEVEL", "verbose"),
        ("MODEL_NAME", "a/b"),
    ],
)
def test_bad_values_name_variable_and_value(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: value})
    assert f"{variable}={value!r}" in str(error.value)


def test_model_path_and_repository_are_exclusive() -> None:
    with pytest.raises(SettingsError, match="MODEL_PATH"):
        load_settings({"MODEL_PATH": "a.onnx", "MODEL_REPOSITORY": "models"})


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert usable_cpu_count({0, 1, 2, 3}, tmp_path) == 1  # 1.5 CPUs keep one thread busy
    write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpu_count({0, 1, 2, 3}, tmp_path) == 4


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert usable_cpu_count(set(range(8)), tmp_path) == 3
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert usable_cpu_count(set(range(8)), tmp_path) == 8


def test_affinity_limits_when_no_quota(tmp_path: Path) -> None:
    assert usable_cpu_count({5}, tmp_path) == 1
    assert usable_cpu_count({0, 1}, tmp_path) == 2
    write(tmp_path / "cpu.max", "800000 100000\n")  # quota above the affinity mask
    assert usable_cpu_count({0, 1}, tmp_path) == 2
    write(tmp_path / "cpu.max", "20000 100000\n")  # a fifth of a CPU still gets one thread
    assert usable_cpu_count({0, 1}, tmp_path) == 1


def test_repository_layout(tmp_path: Path) -> None:
    for relative in ("b/2/model.onnx", "b/10/model.onnx", "a/1/model.onnx", "a/x/model.onnx"):
        write(tmp_path / relative, "")
    write(tmp_path / "notes.txt", "")
    sources = discover_models(Settings(model_repository=tmp_path))
    assert [(s.name, s.version) for s in sources] == [("a", "1"), ("b", "2"), ("b", "10")]
    with pytest.raises(ModelSourceError, match="exactly one"):
        discover_models(Settings(model_repository=tmp_path, model_sha256="0" * 64))


def test_default_model_is_reproducible() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_default_model", REPO / "scripts" / "make_default_model.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = script.model_bytes()
    assert data == DEFAULT_MODEL.read_bytes()
    assert len(data) < 10 * 1024 * 1024


def test_default_model_signature() -> None:
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    [model_input] = session.get_inputs()
    assert (model_input.name, model_input.type, model_input.shape[1]) == (
        "input",
        "tensor(float)",
        256,
    )
    assert isinstance(model_input.shape[0], str)  # dynamic batch dimension
    outputs = {o.name: (o.type, o.shape[1:]) for o in session.get_outputs()}
    assert outputs == {"logits": ("tensor(float)", [10]), "label": ("tensor(int64)", [])}
    batch = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    logits, label = session.run(None, {"input": batch})
    np.testing.assert_array_equal(label, logits.argmax(axis=1))
    assert len(set(label.tolist())) > 3  # the classifier is not degenerate
