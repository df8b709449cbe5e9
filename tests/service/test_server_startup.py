"""Startup: bad settings and unusable models stop `python -m service` with one clear line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx
import onnxruntime as ort
import pytest

from tests.models_for_tests import repository_models
from tests.service.live_server import REPO, running_server, server_env
from tests.service.model_factory import DEFAULT_MODEL

START_TIMEOUT_S = 60


def start_and_fail(env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the server expecting it to exit by itself; its exit code and stderr lines."""
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=server_env({"PORT": "1", **env}),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()]


def error_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "ERROR" in line or line.startswith("error:")]


def test_sha256_mismatch(tmp_path: Path) -> None:
    code, lines = start_and_fail({"MODEL_PATH": str(DEFAULT_MODEL), "MODEL_SHA256": "0" * 64})
    assert code == 1
    [error] = error_lines(lines)
    assert str(DEFAULT_MODEL) in error
    assert "0" * 64 in error
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() in error


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.onnx"
    code, lines = start_and_fail({"MODEL_PATH": str(missing)})
    assert code == 1
    [error] = error_lines(lines)
    assert str(missing) in error


def test_corrupt_model_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt" / "1" / "model.onnx"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    code, lines = start_and_fail({"MODEL_REPOSITORY": str(tmp_path)})
    assert code == 1
    [error] = error_lines(lines)
    assert str(corrupt) in error


def test_empty_repository(tmp_path: Path) -> None:
    code, lines = start_and_fail({"MODEL_REPOSITORY": str(tmp_path)})
    assert code == 1
    assert str(tmp_path) in error_lines(lines)[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "http"),
        ("MAX_BATCH_SIZE", "-3"),
        ("MAX_BATCH_DELAY_MS", "nan"),
        ("EXECUTION_PROVIDERS", "cuda,tpu"),
        ("LOG_FORMAT", "xml"),
        ("MODEL_SHA256", "abc"),
    ],
)
def test_bad_setting_names_variable_and_value(variable: str, value: str) -> None:
    code, lines = start_and_fail({variable: value})
    assert code == 2
    assert lines == [lines[0]]  # exactly one line
    assert variable in lines[0]
    assert repr(value) in lines[0]


def test_model_path_with_sha256_serves_under_given_name(tmp_path: Path) -> None:
    digest = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    env = {"MODEL_PATH": str(DEFAULT_MODEL), "MODEL_SHA256": digest, "MODEL_NAME": "scorer"}
    with running_server(env, tmp_path / "log") as server:
        metadata = httpx.get(f"{server.base}/v2/models/scorer").json()
        assert metadata["name"] == "scorer"
        assert metadata["versions"] == ["1"]


def test_default_repository_is_the_bundled_model(tmp_path: Path) -> None:
    """No MODEL_REPOSITORY nor MODEL_PATH: whatever models/ holds is served, every version."""
    bundled = REPO / "models"
    with running_server({}, tmp_path / "log", bundled=True) as server:
        index = httpx.post(f"{server.base}/v2/repository/index").json()
        served: dict[str, list[str]] = {}
        for entry in index:
            assert entry["state"] == "READY", entry
            served.setdefault(entry["name"], []).append(entry["version"])
        assert {n: sorted(v, key=int) for n, v in served.items()} == repository_models(bundled)
        for name in served:
            assert httpx.get(f"{server.base}/v2/models/{name}/ready").status_code == 200
        assert str(bundled) in server.log()


@pytest.mark.parametrize(("telemetry", "writes"), [(None, False), ("0", True)])
def test_writes_nothing_to_home_unless_telemetry_is_enabled(
    tmp_path: Path, telemetry: str | None, writes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server must run on a read-only root filesystem: serving writes no files.

    The second case proves the check can fail: onnxruntime's own telemetry store appears
    under HOME when the user explicitly re-enables it.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("CI", raising=False)  # onnxruntime keeps no telemetry store when CI is set
    env = {"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    if telemetry is not None:
        env["ORT_DISABLE_TELEMETRY"] = telemetry
    with running_server(env, tmp_path / "log") as server:
        body = {
            "inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [1] * 256}]
        }
        assert httpx.post(f"{server.base}/v2/models/mlp/infer", json=body).status_code == 200
    written = [path for path in home.rglob("*") if path.is_file()]
    assert bool(written) == writes, written


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="CUDA may be usable with this onnxruntime build: tests/gpu covers that case",
)
def test_unusable_cuda_falls_back_to_cpu_loudly(tmp_path: Path) -> None:
    """A CPU build of onnxruntime: CUDA is asked for, CPU is reported."""
    with running_server({"EXECUTION_PROVIDERS": "cuda,cpu"}, tmp_path / "log") as server:
        metadata = httpx.get(f"{server.base}/v2/models/mlp").json()
        assert metadata["execution_providers"] == ["CPUExecutionProvider"]
        warnings = [line for line in server.log().splitlines() if "WARNING" in line]
        assert any(
            "CUDAExecutionProvider" in line and "falling back to" in line for line in warnings
        )


def test_bad_setting_stops_main_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m service`'s entry point in process (the subprocess tests above run it too)."""
    from service.__main__ import main

    monkeypatch.setenv("MAX_INFLIGHT", "0")
    assert main() == 2
    assert capsys.readouterr().err == (
        "error: invalid MAX_INFLIGHT='0': must be an integer from 1 to 1000000\n"
    )
