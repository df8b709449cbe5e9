"""Image sizes and build times come from `bench/image_report.py`.

This wrapper only decides whether it can run here (script present, Docker engine answering)
and returns its Markdown table, or says why there is none.
"""

from __future__ import annotations

import subprocess
import sys

from bench.workload import REPO_ROOT
from onnx_serving.docker_cli import docker_binary

IMAGE_REPORT = REPO_ROOT / "bench" / "image_report.py"
TIMEOUT_S = 3600


def image_report(variants: str) -> tuple[str | None, str | None]:
    """(Markdown table, None) or (None, why it was skipped)."""
    if not IMAGE_REPORT.exists():
        return None, f"{IMAGE_REPORT.relative_to(REPO_ROOT)} not present"
    docker = docker_binary()
    if docker is None:
        return None, "no docker client found"
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return None, "no Docker engine answering (`docker info` failed)"
    completed = subprocess.run(
        [sys.executable, str(IMAGE_REPORT), "--variants", variants],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=TIMEOUT_S,
    )
    if completed.returncode != 0:
        return None, f"image_report.py failed ({completed.returncode}): {completed.stderr[-500:]}"
    return completed.stdout, None
