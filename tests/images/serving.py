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


def model_metadata(url: str, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}", timeout=10) as response:
        metadata: dict[str, Any] = json.load(response)
    return metadata


def served_models(url: str) -> dict[str, list[str]]:
    """What the server serves, from its repository index: {name: [versions]}, versions in
    numeric order (compare with tests.models_for_tests.repository_models)."""
    served: dict[str, list[str]] = {}
    for entry in repository_index(url):
        served.setdefault(str(entry["name"]), []).append(str(entry["version"]))
    return {name: sorted(versions, key=int) for name, versions in served.items()}


def repository_index(url: str) -> list[dict[str, Any]]:
    """The server's repository index: one entry per model version (name, version, sha256)."""
    request = urllib.request.Request(f"http://{url}/v2/repository/index", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        index: list[dict[str, Any]] = json.load(response)
    return index
