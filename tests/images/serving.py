"""Talking to a served image from the host: the shared smoke command and plain REST reads."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

from onnx_serving.commands import smoke_command
from tests.images.docker_support import REPO


def run_smoke(url: str, model: str = "", *extra: str) -> subprocess.CompletedProcess[str]:
    """The exact command the Dagger checks run (every served model, or `model`), with this
    venv's python."""
    return subprocess.run(
        [*smoke_command(url, [model] if model else [], python=sys.executable), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def model_metadata(url: str, model: str = "mlp") -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}", timeout=10) as response:
        metadata: dict[str, Any] = json.load(response)
    return metadata
