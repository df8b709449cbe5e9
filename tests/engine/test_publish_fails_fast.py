"""`publish` through the local engine stops before anything is built when the release cannot
be pushed: no repository, a login the registry refuses or a login missing. Every docker
command the engine runs goes through a logging wrapper ($DOCKER), so "nothing built" is read
off what ran, not assumed."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from pathlib import Path

import pytest

from local_engine.docker import Docker
from onnx_serving.docker_cli import docker_binary
from tests.engine.private_registry import USERNAME
from tests.engine.test_pipeline_functions import pipeline

pytestmark = pytest.mark.docker

RELEASE = ("publish", "--tag", "v1.2.3")


@pytest.fixture
def docker_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that lists, one per line, each docker command the engine runs."""
    real = docker_binary()
    if real is None:
        pytest.skip("no docker client")
    calls = tmp_path / "docker-calls.txt"
    calls.touch()
    wrapper = tmp_path / "docker"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("DOCKER", str(wrapper))
    assert Docker().binary == str(wrapper)  # the engine's docker commands would be listed
    return calls


def assert_nothing_built_or_run(calls: Path) -> None:
    commands = [line.split()[0] for line in calls.read_text().splitlines() if line.strip()]
    assert not {"build", "buildx", "run", "create", "push"} & set(commands), commands


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_a_missing_repository_is_refused_before_anything_runs(docker_calls: Path) -> None:
    done = pipeline(*RELEASE, "--registry", "127.0.0.1:5000")
    assert done.returncode != 0
    assert "repository" in last_line(done), done.stderr[-2000:]
    assert_nothing_built_or_run(docker_calls)


def test_a_refused_login_is_one_line_before_any_build(
    docker_calls: Path, private_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = ("--registry", private_registry, "--repository", "team/app")
    monkeypatch.setenv("FAILS_FAST_PASSWORD", "wrong")
    done = pipeline(
        *RELEASE, *target, "--username", USERNAME, "--password", "env://FAILS_FAST_PASSWORD"
    )
    assert done.returncode != 0
    line = last_line(done)
    assert f"registry {private_registry} refused the login of '{USERNAME}'" in line, line
    assert "wrong" not in done.stdout + done.stderr  # the password is never echoed
    assert_nothing_built_or_run(docker_calls)

    no_login = pipeline(*RELEASE, *target)
    assert f"registry {private_registry} needs a login" in last_line(no_login)
    assert_nothing_built_or_run(docker_calls)


def test_a_docker_config_login_is_used_for_each_registry_before_any_build(
    docker_calls: Path, private_registry: str, tmp_path: Path
) -> None:
    # Two registries in one publish: the open one on 127.0.0.1:5000 and the private one,
    # whose login comes from the Docker config file (refused: a wrong token in it).
    wrong = base64.b64encode(f"{USERNAME}:not-the-password".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {private_registry: {"auth": wrong}}}))
    registries = f"127.0.0.1:5000,{private_registry}"
    done = pipeline(
        *RELEASE,
        *("--registry", registries, "--repository", "team/app"),
        *("--docker-config", f"file://{config}"),
    )
    assert done.returncode != 0
    line = last_line(done)
    assert f"registry {private_registry} refused the login of '{USERNAME}'" in line, line
    assert "not-the-password" not in done.stdout + done.stderr
    assert_nothing_built_or_run(docker_calls)
