"""The server on a real NVIDIA GPU: CUDA is used when asked for, and answers match the CPU.

Runs only where ONNX Runtime's CUDA provider is installed AND a GPU is visible (onnxruntime-gpu
on a machine with the NVIDIA driver); everywhere else it is skipped. The CPU-only fallback is
tested in tests/service/test_startup.py, and the GPU image's fallback in tests/images.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from onnx_serving.commands import smoke_command
from tests.models_for_tests import mlp_model
from tests.service.live_server import REPO, running_server

MODEL = mlp_model()  # the default MLP, written by the tests
CUDA = "CUDAExecutionProvider"


def gpu_visible() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None or CUDA not in ort.get_available_providers():
        return False
    return subprocess.run([smi, "-L"], capture_output=True, check=False).returncode == 0


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_visible(), reason="needs onnxruntime-gpu and an NVIDIA GPU"),
]


def cpu_reference(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    logits, label = session.run(["logits", "label"], {"input": rows})
    return logits, label


def test_cuda_provider_in_use_and_answers_match_cpu(tmp_path: Path) -> None:
    env = {"EXECUTION_PROVIDERS": "cuda,cpu", "MODEL_PATH": str(MODEL), "MODEL_NAME": "mlp"}
    with running_server(env, tmp_path / "server.log") as server:
        client = httpclient.InferenceServerClient(server.url)
        metadata = client.get_model_metadata("mlp")
        assert metadata["execution_providers"][0] == CUDA, metadata

        smoke = subprocess.run(
            smoke_command(server.url, python=sys.executable),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr

        rows = np.random.default_rng(7).standard_normal((128, 256)).astype(np.float32)
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        result = client.infer("mlp", [tensor])
        gpu_logits, gpu_label = result.as_numpy("logits"), result.as_numpy("label")

    cpu_logits, cpu_label = cpu_reference(rows)
    # CUDA kernels (TF32 on Hopper) differ from the CPU in the last bits, not in the answer.
    np.testing.assert_allclose(gpu_logits, cpu_logits, rtol=1e-2, atol=1e-2)
    top2 = np.sort(cpu_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-2  # rows whose winner is not a near tie
    assert clear.sum() > 100
    assert np.array_equal(gpu_label[clear], cpu_label[clear])
    assert "CUDAExecutionProvider" in server.log()
