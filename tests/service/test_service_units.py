"""Unit tests: settings parsing, CPU sizing from affinity and cgroups, the default model."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from service.binary import encode_tensor
from service.cpus import cgroup_cpu_quota, own_cgroups, usable_cpu_count
from service.errors import BadRequest
from service.inference_log import config_from
from service.model_config import model_metadata
from service.repository import ModelSource, ModelSourceError, discover_models
from service.runtime import CPU, ModelLoadError, first_line, load_model
from service.settings import Settings, SettingsError, declared, load_settings, settings_table
from tests.models_for_tests import MLP_PRODUCER, make_default_model, mlp_bytes
from tests.service.model_factory import DEFAULT_MODEL, REPO


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.execution_providers == ("CPUExecutionProvider",)
    assert settings.max_batch_size is None  # the default cap; larger requests run alone
    assert settings.workers == 1


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "PORT": " 9000 ",
            "EXECUTION_PROVIDERS": "CUDA, cpu",
            "INTRA_OP_THREADS": "3",
            "MAX_BATCH_SIZE": "16",
            "MAX_BATCH_DELAY_MS": "1.5",
            "BODY_TIMEOUT_S": "0.25",
            "LOG_LEVEL": "WARNING",
            "MODEL_SHA256": "A" * 64,
        }
    )
    assert settings.port == 9000
    assert settings.execution_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert settings.intra_op_threads == 3
    assert settings.max_batch_size == 16 and settings.max_batch_delay_ms == 1.5
    assert settings.body_timeout_s == 0.25
    assert settings.log_level == "warning"
    assert settings.model_sha256 == "a" * 64


def test_gpu_only_provider_list_keeps_cpu_fallback() -> None:
    providers = load_settings({"EXECUTION_PROVIDERS": "cuda"}).execution_providers
    assert providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("PORT", "70000", "must be an integer from 0 to 65535"),
        ("INTRA_OP_THREADS", "0", "must be an integer from 1 to 1024"),
        ("MAX_INFLIGHT", "many", "must be an integer from 1 to 1000000"),
        ("MAX_BODY_BYTES", "10", "must be an integer from 1024 to 1099511627776"),
        ("MAX_BATCH_DELAY_MS", "-1", "must be a number from 0.0 to 60000.0"),
        ("MAX_BATCH_DELAY_MS", "soon", "must be a number from 0.0 to 60000.0"),
        ("BODY_TIMEOUT_S", "0", "must be a number from 0.001 to 3600.0"),
        ("BODY_TIMEOUT_S", "inf", "must be a number from 0.001 to 3600.0"),
        ("EXECUTION_PROVIDERS", ",", "empty provider list"),
        (
            "EXECUTION_PROVIDERS",
            "tpu",
            "unknown provider 'tpu' (known: cpu, cuda, tensorrt, rocm, openvino, dnnl)",
        ),
        ("LOG_LEVEL", "verbose", "must be one of debug, info, warning, error, critical"),
        ("MODEL_NAME", "a/b", "use only letters, digits, '_', '.' and '-'"),
        ("MODEL_SHA256", "abc", "must be 64 hexadecimal characters"),
        ("PREDICTION_LOG_PAYLOADS", "2", "must be 1 or 0 (also true/false, yes/no, on/off)"),
    ],
)
def test_bad_values_name_variable_and_value(variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: value})
    assert str(error.value) == f"invalid {variable}={value!r}: {reason}"


def test_model_path_and_repository_are_exclusive() -> None:
    with pytest.raises(SettingsError, match="MODEL_PATH"):
        load_settings({"MODEL_PATH": "a.onnx", "MODEL_REPOSITORY": "models"})


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A fake /proc whose self/cgroup says the process is in the root cgroup."""
    write(tmp_path / "proc" / "self" / "cgroup", "0::/\n")
    return tmp_path / "proc"


def test_cgroup_v2_quota(tmp_path: Path, proc: Path) -> None:
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 1.5
    assert usable_cpu_count({0, 1, 2, 3}, tmp_path, proc) == 1  # 1.5 CPUs keep one thread busy
    write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) is None
    assert usable_cpu_count({0, 1, 2, 3}, tmp_path, proc) == 4


def test_cgroup_v1_quota(tmp_path: Path, proc: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert usable_cpu_count(set(range(8)), tmp_path, proc) == 3
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert usable_cpu_count(set(range(8)), tmp_path, proc) == 8


def test_affinity_limits_when_no_quota(tmp_path: Path, proc: Path) -> None:
    assert usable_cpu_count({5}, tmp_path, proc) == 1
    assert usable_cpu_count({0, 1}, tmp_path, proc) == 2
    write(tmp_path / "cpu.max", "800000 100000\n")  # quota above the affinity mask
    assert usable_cpu_count({0, 1}, tmp_path, proc) == 2
    write(tmp_path / "cpu.max", "20000 100000\n")  # a fifth of a CPU still gets one thread
    assert usable_cpu_count({0, 1}, tmp_path, proc) == 1


def test_cgroup_v2_quota_of_own_cgroup_and_its_parents(tmp_path: Path, proc: Path) -> None:
    """The tightest quota between our own cgroup and the root binds, not the root's."""
    write(proc / "self" / "cgroup", "0::/kubepods.slice/pod1/app\n")
    sys_fs = tmp_path / "cgroup"
    write(sys_fs / "kubepods.slice" / "cpu.max", "800000 100000\n")
    write(sys_fs / "kubepods.slice" / "pod1" / "cpu.max", "250000 100000\n")
    write(sys_fs / "kubepods.slice" / "pod1" / "app" / "cpu.max", "max 100000\n")
    write(sys_fs / "kubepods.slice" / "other" / "cpu.max", "100000 100000\n")  # a sibling
    assert cgroup_cpu_quota(sys_fs, proc) == 2.5
    assert usable_cpu_count(set(range(16)), sys_fs, proc) == 2


def test_a_tighter_quota_further_up_binds_a_looser_own_one(tmp_path: Path, proc: Path) -> None:
    """A container allowed 4 CPUs inside a slice capped at 1.5 gets 1.5, in v2 and in v1."""
    write(proc / "self" / "cgroup", "0::/kubepods.slice/pod1/app\n")
    v2 = tmp_path / "v2"
    write(v2 / "kubepods.slice" / "cpu.max", "150000 100000\n")  # two levels up
    write(v2 / "kubepods.slice" / "pod1" / "cpu.max", "max 100000\n")
    write(v2 / "kubepods.slice" / "pod1" / "app" / "cpu.max", "400000 100000\n")
    assert cgroup_cpu_quota(v2, proc) == 1.5
    assert usable_cpu_count(set(range(16)), v2, proc) == 1

    write(proc / "self" / "cgroup", "3:cpu,cpuacct:/kubepods.slice/pod1/app\n")
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    for folder, quota in (("kubepods.slice", 150000), ("kubepods.slice/pod1/app", 400000)):
        write(v1 / folder / "cpu.cfs_quota_us", f"{quota}\n")
        write(v1 / folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1", proc) == 1.5


def test_cgroup_v1_cpu_controller_line_is_followed(tmp_path: Path, proc: Path) -> None:
    write(
        proc / "self" / "cgroup",
        "4:memory:/elsewhere\n3:cpu,cpuacct:/system.slice/svc\n0::/\n",
    )
    folder = tmp_path / "cgroup" / "cpu,cpuacct" / "system.slice" / "svc"
    write(folder / "cpu.cfs_quota_us", "150000\n")
    write(folder / "cpu.cfs_period_us", "50000\n")
    write(folder.parent / "cpu.cfs_quota_us", "-1\n")
    write(folder.parent / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cgroup", proc) == 3.0


def test_cgroup_path_missing_below_the_mount_falls_back_to_its_root(
    tmp_path: Path, proc: Path
) -> None:
    """Docker without a cgroup namespace: /proc names the host path, the mount is ours."""
    write(proc / "self" / "cgroup", "2:cpu:/docker/0123abc\n")
    write(tmp_path / "cgroup" / "cpu" / "cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cgroup" / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cgroup", proc) == 2.0


@pytest.mark.parametrize("content", [None, "0::/../../outside\n", "garbage\n"])
def test_unreadable_or_foreign_cgroup_paths_use_the_root(
    tmp_path: Path, content: str | None
) -> None:
    proc = tmp_path / "proc"
    if content is not None:
        write(proc / "self" / "cgroup", content)
    write(tmp_path / "cgroup" / "cpu.max", "300000 100000\n")
    assert own_cgroups(proc) == (PurePosixPath("/"), PurePosixPath("/"))
    assert cgroup_cpu_quota(tmp_path / "cgroup", proc) == 3.0


def test_model_reports_the_providers_its_session_uses() -> None:
    """Not the requested ones: a provider this onnxruntime build lacks is not in use."""
    missing = next(
        name
        for name in ("CUDAExecutionProvider", "ROCMExecutionProvider", "DnnlExecutionProvider")
        if name not in ort.get_available_providers()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime warns about the missing provider
        model = load_model(ModelSource("mlp", "1", DEFAULT_MODEL), [missing, CPU], 1)
    assert model.providers == [CPU]
    assert model_metadata(model, ["1"])["execution_providers"] == [CPU]


def test_repository_layout(tmp_path: Path) -> None:
    for relative in ("b/2/model.onnx", "b/10/model.onnx", "a/1/model.onnx", "a/x/model.onnx"):
        write(tmp_path / relative, "")
    write(tmp_path / "notes.txt", "")
    sources = discover_models(Settings(model_repository=tmp_path))
    assert [(s.name, s.version) for s in sources] == [("a", "1"), ("b", "2"), ("b", "10")]
    with pytest.raises(ModelSourceError, match="exactly one"):
        discover_models(Settings(model_repository=tmp_path, model_sha256="0" * 64))


def test_default_model_is_reproducible(tmp_path: Path) -> None:
    """scripts/make_default_model.py writes the same bytes on every run. Where models/ holds a
    file it made (same size, its producer name), that file is those very bytes."""
    written = tmp_path / "mlp" / "1" / "model.onnx"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_default_model.py"), "--output", str(written)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = make_default_model.model_bytes()
    assert written.read_bytes() == data == mlp_bytes()
    assert len(data) < 10 * 1024 * 1024
    for bundled in sorted((REPO / "models").rglob("*.onnx")):
        if bundled.stat().st_size != len(data):
            continue
        if onnx.load(str(bundled), load_external_data=False).producer_name == MLP_PRODUCER:
            assert bundled.read_bytes() == data, f"{bundled}: rerun scripts/make_default_model.py"


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


def test_the_configuration_table_is_the_declared_settings() -> None:
    """Each setting is declared once (service/settings.py); docs/SERVER.md shows exactly that."""
    assert settings_table() in (REPO / "docs" / "SERVER.md").read_text()
    assert [spec.env for _, spec, _ in declared()] == [
        line.split("`")[1] for line in settings_table().splitlines()[2:]
    ]


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_password_file_loses_only_its_line_ending(tmp_path: Path, ending: str) -> None:
    """A password is the file's text less its final line ending; any other character,
    trailing X or space included, belongs to it."""
    secret = tmp_path / "password"
    secret.write_bytes(f"s3cret XX{ending}".encode())
    settings = load_settings(
        {
            "PREDICTION_LOG_URL": "postgresql://app@127.0.0.1/db",
            "PREDICTION_LOG_PASSWORD_FILE": str(secret),
        }
    )
    assert config_from(settings).password == "s3cret XX"


def test_an_error_shows_its_first_line_or_else_its_type() -> None:
    assert first_line(RuntimeError("  [ONNXRuntimeError] bad shape\nstack  ")) == (
        "[ONNXRuntimeError] bad shape"
    )
    assert first_line(MemoryError()) == "MemoryError"


def test_binary_outputs_are_little_endian_whatever_the_array_order() -> None:
    # The binary extension's layout is little-endian; a big-endian array is converted.
    big = np.array([1, 256], dtype=">i4")
    assert encode_tensor(big, "INT32") == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    assert encode_tensor(np.array([True, False]), "BOOL") == b"\x01\x00"


def test_a_run_the_session_refuses_is_a_bad_request_logged_as_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client's mistake that only ONNX Runtime sees (here: FP64 data for an FP32 input) is
    # a 400 and an INFO line; an ERROR line would page someone for nothing.
    model = load_model(ModelSource("mlp", "1", DEFAULT_MODEL), [CPU], 1)
    with (
        caplog.at_level(logging.INFO, logger="service.runtime"),
        pytest.raises(BadRequest, match=r"^inference failed: "),
    ):
        model.run({"input": np.zeros((1, 256), np.float64)}, ["label"])
    [record] = [r for r in caplog.records if r.getMessage().startswith("inference: ")]
    assert record.levelno == logging.INFO


@pytest.mark.parametrize(
    ("node", "output_type", "reason"),
    [
        (
            helper.make_node("SequenceConstruct", ["x"], ["y"]),
            helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None),
            "output 'y' is seq(tensor(float)), not a tensor this server serves; export it as a "
            "tensor (skl2onnx: options={'zipmap': False} for classifiers)",
        ),
        (
            helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BFLOAT16),
            helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["b", 2]),
            "output 'y' is tensor(bfloat16), not a tensor this server serves; cast it to a "
            "supported element type in the model",
        ),
    ],
)
def test_a_model_with_an_output_the_protocol_cannot_carry_is_refused(
    node: onnx.NodeProto, output_type: onnx.ValueInfoProto, reason: str, tmp_path: Path
) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2])
    graph = helper.make_graph([node], "odd", [x], [output_type])
    path = tmp_path / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what this onnxruntime reads
    onnx.save(model, path)
    with pytest.raises(ModelLoadError) as error:
        load_model(ModelSource("odd", "1", path), [CPU], 1)
    assert str(error.value) == f"model file {path}: {reason}"
