"""The release smoke test (`python -m onnx_serving.smoke`, what `publish` runs against every
image it is about to push) against a live server, without Docker; then its checks one by one
against stand-in clients."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnx_serving import smoke
from onnx_serving.models import ModelIdentity, models_label
from tests.service.live_server import LiveServer
from tests.service.model_factory import ONNX_TYPES

CPU_ONLY = "providers=['CPUExecutionProvider']"


def run_smoke(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "onnx_serving.smoke", "--timeout", "20", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_smoke_checks_every_output_of_every_served_model(server: LiveServer) -> None:
    completed = run_smoke("--url", server.url)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    identity, lookup, mlp = completed.stdout.splitlines()
    ok = f"smoke: OK {server.url}"
    outputs = ", ".join(f"out_{datatype}[2, 2]" for datatype in ONNX_TYPES)
    assert identity == f"{ok} model=identity outputs={outputs} {CPU_ONLY}"
    assert lookup == f"{ok} model=lookup outputs=row[2, 2] {CPU_ONLY}"
    assert mlp == f"{ok} model=mlp outputs=logits[2, 10], label[2] {CPU_ONLY}"


def test_smoke_fails_for_a_model_the_server_does_not_serve(server: LiveServer) -> None:
    completed = run_smoke("--url", server.url, "--model", "absent")
    assert completed.returncode != 0
    assert "absent" in completed.stdout + completed.stderr


def files_label(repository: Path) -> str:
    """The models label of a repository's files, as the image builds compute it."""
    return models_label(
        ModelIdentity(p.parts[-3], int(p.parts[-2]), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in repository.glob("*/*/model.onnx")
    )


def test_the_image_label_is_held_against_what_the_server_serves(
    server: LiveServer, model_repository: Path
) -> None:
    label = files_label(model_repository)
    completed = run_smoke("--url", server.url, "--models-label", label)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    versions = len(label.split(","))
    assert completed.stdout.splitlines()[-1] == (
        f"smoke: OK {server.url} models={versions} versions match the image's label, "
        "sha256 included"
    )


def test_a_label_that_names_another_file_fails_naming_both(
    server: LiveServer, model_repository: Path
) -> None:
    label = files_label(model_repository)
    first = label.split(",")[0]
    name_version, _, digest = first.partition("@sha256:")
    wrong = label.replace(first, f"{name_version}@sha256:{'0' * 64}")
    completed = run_smoke("--url", server.url, "--models-label", wrong)
    assert completed.returncode == 1
    failure = completed.stderr.strip().splitlines()[-1]
    assert f"label only {name_version}@sha256:{'0' * 64}" in failure
    assert f"server only {name_version}@sha256:{digest}" in failure


class _Client:
    """The client calls wait_ready and served_models make, answered as configured."""

    def __init__(self, ready: bool = True, error: Exception | None = None) -> None:
        self.ready, self.error = ready, error

    def is_server_live(self) -> bool:
        if self.error is not None:
            raise self.error
        return True

    def is_server_ready(self) -> bool:
        return self.ready

    def get_model_repository_index(self) -> list[dict[str, Any]]:
        return []


@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (_Client(ready=False), "server not live/ready"),
        (_Client(error=ConnectionRefusedError(111, "Connection refused")), "Connection refused"),
        (_Client(error=TimeoutError()), "TimeoutError"),
    ],
)
def test_not_ready_says_what_was_seen_last(client: _Client, reason: str) -> None:
    with pytest.raises(smoke.SmokeError) as error:
        smoke.wait_ready(client, timeout_s=0)
    assert str(error.value).startswith("not ready after 0s: ")
    assert str(error.value).endswith(reason)


def test_an_empty_repository_index_fails() -> None:
    with pytest.raises(smoke.SmokeError, match=r"^the repository index lists no model$"):
        smoke.served_models(_Client())


def test_float_outputs_may_differ_by_rounding_only() -> None:
    computed = np.array([1.0, 100.0], dtype=np.float32)
    assert smoke.same(computed, computed * (1 + 1e-7))
    assert not smoke.same(computed, computed + np.float32(0.01))
    assert not smoke.same(computed, np.array([1.5, 100.0], dtype=np.float32))


def test_a_failure_names_the_url_and_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(["--url", "127.0.0.1:9", "--timeout", "0"]) == 1  # discard: refused
    failure = capsys.readouterr().err
    assert failure.startswith("smoke: FAIL: 127.0.0.1:9 model=all: not ready after 0s: ")
    assert smoke.main(["--url", "127.0.0.1:9", "--timeout", "0", "--model", "a"]) == 1
    assert capsys.readouterr().err.startswith("smoke: FAIL: 127.0.0.1:9 model=a: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --url"),
        (["--url", "http://127.0.0.1:8000"], "--url takes HOST:PORT without a scheme"),
    ],
)
def test_a_bad_command_line_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        smoke.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


class _Result:
    """An InferResult with one FP32 output `y` of shape [2, 1]."""

    def __init__(self, request_id: str, binary: bool) -> None:
        self.request_id, self.binary = request_id, binary

    def get_response(self) -> dict[str, Any]:
        return {"id": self.request_id}

    def as_numpy(self, name: str) -> np.ndarray:
        return np.zeros((2, 1), dtype=np.float32)

    def get_output(self, name: str) -> dict[str, Any]:
        parameters = {"binary_data_size": 8} if self.binary else {}
        return {"name": name, "datatype": "FP32", "shape": [2, 1], "parameters": parameters}


class _InferClient:
    def __init__(self, result: _Result) -> None:
        self.result = result

    def infer(self, model: str, inputs: list[Any], **options: Any) -> _Result:
        return self.result


@pytest.mark.parametrize(
    ("result", "binary", "message"),
    [
        (_Result("smoke", binary=False), True, "binary: output 'y' came in the wrong encoding"),
        (_Result("smoke", binary=True), False, "JSON: output 'y' came in the wrong encoding"),
        (_Result("other", binary=True), True, "binary: response id 'other' != 'smoke'"),
    ],
)
def test_an_answer_that_breaks_the_protocol_fails(
    result: _Result, binary: bool, message: str
) -> None:
    metadata = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}
    with pytest.raises(smoke.SmokeError, match=f"^{message}$"):
        smoke.infer(_InferClient(result), "m", metadata, [], binary=binary)
    passing = _Result("smoke", binary=binary)
    arrays = smoke.infer(_InferClient(passing), "m", metadata, [], binary=binary)
    assert list(arrays) == ["y"]
