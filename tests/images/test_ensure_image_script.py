"""scripts/ensure_image.sh's decisions, with a recording stand-in for the docker client (no
engine, no debootstrap): an image already local is left alone, a missing one is pulled, one
that can be neither pulled nor stood in for is an error, and `--mirror`'s usage is checked
before anything runs (its header comment promises each)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.images.docker_support import REPO

SCRIPT = REPO / "scripts/ensure_image.sh"


def run(tmp_path: Path, *args: str, local: str = "", pull: int = 0) -> tuple[int, str, list[str]]:
    """Run the script with a docker client that has the images in `local` and whose pull
    exits `pull`; (exit code, stderr, the docker commands it ran)."""
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {calls}\n'
        "if [[ $1 == image && $2 == inspect ]]; then\n"
        f'    for have in {local}; do [[ $3 == "$have" ]] && exit 0; done\n'
        "    exit 1\n"
        "fi\n"
        f"[[ $1 == pull ]] && exit {pull}\n"
        "exit 0\n"
    )
    docker.chmod(0o755)
    done = subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, "DOCKER": str(docker)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    made = calls.read_text().splitlines() if calls.exists() else []
    return done.returncode, done.stderr, made


def test_an_image_already_local_is_left_alone(tmp_path: Path) -> None:
    code, err, calls = run(tmp_path, "postgres:15", local="postgres:15")
    assert code == 0, err
    assert calls == ["image inspect postgres:15"]


def test_a_missing_image_is_pulled(tmp_path: Path) -> None:
    code, err, calls = run(tmp_path, "postgres:15")
    assert code == 0, err
    assert calls == ["image inspect postgres:15", "pull -q postgres:15"]
    assert "postgres:15 is not local; trying docker pull" in err


def test_an_image_that_cannot_be_pulled_or_stood_in_for_is_an_error(tmp_path: Path) -> None:
    code, err, calls = run(tmp_path, "alpine:3", pull=1)
    assert code == 1
    assert "cannot pull 'alpine:3' and can only build a stand-in for" in err
    assert calls == ["image inspect alpine:3", "pull -q alpine:3"]


def test_mirror_needs_platforms(tmp_path: Path) -> None:
    code, err, calls = run(tmp_path, "--mirror", "127.0.0.1:5000", "python:3.11-slim-bookworm")
    assert code == 2
    assert "--mirror needs the platforms to publish" in err
    assert calls == []


def test_mirror_publishes_python_images_only(tmp_path: Path) -> None:
    code, err, _ = run(
        tmp_path, "--mirror", "127.0.0.1:5000", "postgres:15", "linux/arm64", local="postgres:15"
    )
    assert code == 2
    assert "--mirror publishes base images (python:*), not postgres:15" in err
