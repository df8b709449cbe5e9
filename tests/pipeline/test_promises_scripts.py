"""scripts/run-local.sh hands its options to `onnx_serving.local serve` (its usage lists
them: --port, --name, the model options), as it does PORT and NAME from the environment. A
stand-in docker client records the calls and stops the job at `docker run`; no engine."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from onnx_serving.images import CONTAINER_PORT

REPO = Path(__file__).resolve().parents[2]


def test_run_local_passes_its_options_to_the_serve_job(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(
        f'#!/bin/bash\necho "$*" >> {calls}\n[[ $1 == run ]] && exit 1\nexit 0\n'  # stop at run
    )
    docker.chmod(0o755)
    with socket.socket() as probe:  # a free port: run-local.sh refuses a busy one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "NAME")}
    done = subprocess.run(
        [str(REPO / "scripts/run-local.sh"), "--port", str(port), "--name", "from-options"],
        env={**env, "DOCKER": str(docker)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    recorded = calls.read_text().splitlines() if calls.exists() else []
    runs = [line.split() for line in recorded if line.startswith("run ")]
    assert len(runs) == 1, "\n".join(recorded) + done.stderr
    assert runs[0][runs[0].index("--name") + 1] == "from-options"
    assert f"127.0.0.1:{port}:{CONTAINER_PORT}" in runs[0]
    assert "rm --force from-options" in recorded  # its own earlier container, by that name
    assert done.returncode == 1  # the stand-in's refused run fails the job, in one line
    assert done.stderr.strip().splitlines()[-1].startswith("serve: docker run")
