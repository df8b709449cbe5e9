"""The host scripts' failure paths, without an engine: fake uv and docker clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings
from tests.images.docker_support import REPO


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_lock_script_keeps_the_locks_when_a_compile_fails(tmp_path: Path) -> None:
    """scripts/lock.sh replaces no lock unless every compile succeeded: here the runtime
    compile works and the GPU one fails; every lock must stay byte-identical."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts/lock.sh", tmp_path / "scripts/lock.sh")
    shutil.copytree(REPO / "scripts/lib", tmp_path / "scripts/lib")  # its --help
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "ci/src/onnx_serving", tmp_path / "ci/src/onnx_serving")  # the table
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    shutil.copytree(REPO / "dockerfiles", tmp_path / "dockerfiles")  # each variant's lock
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    uv = tmp_path / "fake-uv"
    uv.write_text(
        "#!/bin/bash\n"
        'case " $* " in *"/gpu.in "*) echo "fake-uv: no solution" >&2; exit 1 ;; esac\n'
        "while [[ $# -gt 0 ]]; do [[ $1 == -o ]] && out=$2; shift; done\n"
        '[[ $out == /dev/null ]] || printf "fake==1 \\\\\\n    --hash=sha256:00\\n" > "$out"\n'
    )
    uv.chmod(0o755)
    before = {p.name: p.read_bytes() for p in (tmp_path / "requirements").glob("*.lock")}
    assert set(before) == {"runtime.lock", "gpu.lock", "dev.lock", "test.lock"}
    done = subprocess.run(
        [str(tmp_path / "scripts/lock.sh")],
        env={**os.environ, "UV": str(uv)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "fake-uv: no solution" in done.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "requirements").glob("*.lock")}
    assert after == before


@pytest.mark.skipif(os.geteuid() != 0, reason="the mirror lookup comes after the root check")
def test_ensure_image_says_when_no_debian_mirror_is_found(tmp_path: Path) -> None:
    """A sources file with no usable entry last used to end the script silently (exit 1)."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/security.list").write_text(
        "deb http://security.debian.org/debian-security bookworm-security main\n"
    )
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "docker", "#!/bin/sh\nexit 1\n")  # no image, no registry
    executable(bin_dir / "debootstrap", "#!/bin/sh\nexit 0\n")
    env = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    done = subprocess.run(
        [str(REPO / "scripts/ensure_image.sh"), "python:3.11-slim-bookworm"],
        env={
            **env,
            "APT_SOURCES_DIR": str(apt),
            "DOCKER": str(bin_dir / "docker"),
            "PATH": f"{bin_dir}:{env['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"no Debian mirror found in {apt}/sources.list*; set DEBIAN_MIRROR" in done.stderr, (
        done.stderr
    )


def test_serve_runs_the_container_with_the_server_grace_period(tmp_path: Path) -> None:
    """`docker stop` must wait longer than the server's graceful shutdown (Docker's default,
    10 s, is shorter). The fake client has every image and builds anything; `run` records
    its arguments."""
    calls = tmp_path / "calls"
    docker = executable(
        tmp_path / "docker",
        "#!/bin/bash\n"
        f'echo "$*" >> {calls}\n'
        "[[ $1 == run ]] && exit 1\n"  # stop run-local.sh right after the run
        "exit 0\n",
    )
    with socket.socket() as s:  # a free port: run-local.sh refuses a busy one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [str(REPO / "scripts/run-local.sh")],
        env={**os.environ, "DOCKER": str(docker), "PORT": str(port), "NAME": "fake-serve"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    runs = [line.split() for line in calls.read_text().splitlines() if line.startswith("run ")]
    assert len(runs) == 1, calls.read_text() + done.stderr
    assert "--stop-timeout" in runs[0], runs[0]
    stop_timeout = int(runs[0][runs[0].index("--stop-timeout") + 1])
    assert stop_timeout > Settings().shutdown_timeout_s, runs[0]


def test_build_refuses_a_bad_model_folder_before_anything_runs(tmp_path: Path) -> None:
    """A folder that is neither a model repository nor one .onnx file: one line naming it,
    before any image is made (not even the base image: no inspect, pull, import or build)."""
    calls = tmp_path / "calls"
    docker = executable(tmp_path / "docker", f'#!/bin/bash\necho "$*" >> {calls}\nexit 0\n')
    models = tmp_path / "not-models"
    (models / "mlp").mkdir(parents=True)
    (models / "mlp" / "notes.txt").write_text("no model here")
    done = subprocess.run(
        [str(REPO / "scripts/build.sh"), "--models", str(models), "cpu"],
        env={**os.environ, "DOCKER": str(docker)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert str(models) in done.stderr, done.stderr
    made = calls.read_text().splitlines() if calls.exists() else []
    assert not [c for c in made if c.split()[0] in {"image", "pull", "import", "build"}], made
