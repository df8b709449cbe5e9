"""The facts a reader needs to judge a run: when, on what CPU, which versions, how busy."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.servers import PEER_VENVS

VERSION_PROBE = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"


def describe() -> dict[str, str]:
    facts = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpus_online": str(os.cpu_count()),
        "load_average_1m": f"{os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "onnxruntime": metadata.version("onnxruntime"),
        "fastapi": metadata.version("fastapi"),
        "wrk": _wrk_version(),
    }
    for peer, venv in PEER_VENVS.items():
        facts[peer] = _peer_version(venv, peer)
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    try:
        completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    except OSError:
        return "not installed"
    return (completed.stdout or completed.stderr).split("Copyright")[0].strip()


def _peer_version(venv: Path, package: str) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        return "not installed"
    completed = subprocess.run(
        [str(python), "-c", VERSION_PROBE, package], capture_output=True, text=True
    )
    return completed.stdout.strip() or "unknown"
