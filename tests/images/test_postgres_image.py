"""The inference log's database image (compose.yaml's `db`): scripts/ensure_image.sh
makes postgres:15 local, pulled or a Debian stand-in, and whichever it is keeps the official
image's environment contract: POSTGRES_USER, POSTGRES_PASSWORD_FILE, POSTGRES_DB."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.images.docker_support import REPO, Docker, unique_name

IMAGE = "postgres:15"
READY_TIMEOUT_S = 120


def test_only_postgres_15_can_be_stood_in_for(tmp_path: Path) -> None:
    """Debian bookworm ships PostgreSQL 15: another tag that cannot be pulled is one line."""
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 1\n")  # no image, no registry
    docker.chmod(0o755)
    done = subprocess.run(
        [str(REPO / "scripts/ensure_image.sh"), "postgres:16"],
        env={**os.environ, "DOCKER": str(docker)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "can only build a stand-in for" in done.stderr, done.stderr
    assert "postgres:15 " in done.stderr, done.stderr


@pytest.fixture
def containers(docker: Docker) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        docker.run("rm", "--force", "--volumes", name, check=False)


@pytest.mark.docker
def test_the_image_keeps_the_official_environment_contract(
    docker: Docker, containers: list[str], tmp_path: Path
) -> None:
    docker.ensure_image(IMAGE)
    secret = tmp_path / "password"
    secret.write_text("contract-password\n")  # the trailing newline is not part of it
    secret.chmod(0o644)
    name = unique_name("images-test-postgres")
    containers.append(name)
    docker.run(
        "run", "--detach", "--name", name, "--publish", "127.0.0.1::5432",
        "--env", "POSTGRES_USER=onnx", "--env", "POSTGRES_DB=inference",
        "--env", "POSTGRES_PASSWORD_FILE=/run/secrets/password",
        "--volume", f"{secret}:/run/secrets/password:ro",
        IMAGE,
    )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        ready = docker.run(
            "exec", name, "pg_isready", "--host=127.0.0.1", "--username=onnx", check=False
        )
        if ready.returncode == 0:
            break
        time.sleep(0.5)
    assert ready.returncode == 0, docker.run("logs", name, check=False).stderr[-3000:]
    port = docker.output("port", name, "5432/tcp").splitlines()[0].rsplit(":", 1)[1]

    async def login(password: str) -> tuple[str, str]:
        url = f"postgresql://onnx:{password}@127.0.0.1:{port}/inference"
        connection = await asyncpg.connect(url, timeout=30)
        try:
            row = await connection.fetchrow("SELECT current_user, current_database()")
            assert row is not None
            return row[0], row[1]
        finally:
            await connection.close()

    assert asyncio.run(login("contract-password")) == ("onnx", "inference")
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(login("wrong"))

    # No password at all: the container refuses to initialise a database, as the official does.
    refused = unique_name("images-test-postgres")
    containers.append(refused)
    docker.run("run", "--name", refused, IMAGE, check=False, timeout=120)
    assert docker.output("inspect", "--format", "{{.State.ExitCode}}", refused) != "0"
    logs = docker.run("logs", refused, check=False)
    assert "superuser password is not specified" in logs.stdout + logs.stderr
