"""The jobs scripts/ runs without Dagger (ci/src/onnx_serving/local.py) and the docker command
lines they use (docker_cli.py), with a recording stand-in for the docker client: no engine.

What they promise (their docstrings, docs/SECURITY.md's run flags):

- `docker run` publishes the port on 127.0.0.1 only, with the hardened flags and a stop
  timeout longer than the server's drain;
- `docker build` of a copied context uses that copy's Dockerfile, mounts the CA bundle as a
  secret from its file, and runs in the host's network only for a model URL on loopback;
- the client is $DOCKER, else Debian's /usr/bin/docker, else PATH's;
- `push` takes REGISTRY/REPOSITORY (localhost too), tags as `publish` would (the variant's
  suffix, existing releases respected, `edge`), and a failed `docker push` fails the job;
- `test-image` passes only an exit 0 on SIGTERM; `wait_healthy` stops at `unhealthy`;
- the models label names every served version (> 0); an empty CA bundle is no bundle."""

from __future__ import annotations

import argparse
import hashlib
import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from onnx_serving import docker_cli, local
from onnx_serving.images import (
    CA_BUNDLE_SECRET_ID,
    CONTAINER_PORT,
    HARDENED_RUN_FLAGS,
    STOP_TIMEOUT_S,
    ImageMetadata,
)
from onnx_serving.models import ModelIdentity, ModelOptions, models_label
from onnx_serving.variants import Variant

DIGEST = "sha256:" + "d" * 64
METADATA = ImageMetadata(version="1.2.3", revision="0" * 40, created="2026-12-07T00:00:00Z")


def contains(command: Sequence[str], part: Sequence[str]) -> bool:
    """Whether `part` appears in `command` as consecutive arguments."""
    return any(list(command[i : i + len(part)]) == list(part) for i in range(len(command)))


# ---- docker_cli: run ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_port", "published"),
    [(8080, f"127.0.0.1:8080:{CONTAINER_PORT}"), (None, f"127.0.0.1::{CONTAINER_PORT}")],
)
def test_run_publishes_on_loopback_only(host_port: int | None, published: str) -> None:
    command = docker_cli.run_command("docker", "img", "name", host_port=host_port)
    assert contains(command, ["--publish", published])


def test_run_is_hardened_unless_asked_not_to_be() -> None:
    hardened = docker_cli.run_command("docker", "img", "name")
    plain = docker_cli.run_command("docker", "img", "name", hardened=False)
    assert contains(hardened, HARDENED_RUN_FLAGS)
    assert not contains(plain, HARDENED_RUN_FLAGS)
    for command in (hardened, plain):
        assert contains(command, ["--stop-timeout", str(STOP_TIMEOUT_S)])
        assert command[:3] == ["docker", "run", "--detach"]


def test_run_puts_options_before_the_image_and_the_command_after() -> None:
    command = docker_cli.run_command(
        "docker", "img", "name", options=["--env", "A=1"], command=["serve", "--x"]
    )
    assert command[-5:] == ["--env", "A=1", "img", "serve", "--x"]


# ---- docker_cli: build ----------------------------------------------------------------------


def test_build_of_a_copied_context_uses_the_copy_s_dockerfile(tmp_path: Path) -> None:
    spec = Variant.cpu.spec
    here = docker_cli.build_command("docker", Variant.cpu, "t", METADATA)
    copy = docker_cli.build_command("docker", Variant.cpu, "t", METADATA, context=str(tmp_path))
    assert contains(here, ["--file", spec.dockerfile]) and here[-1] == "."
    assert contains(copy, ["--file", f"{tmp_path}/{spec.dockerfile}"]) and copy[-1] == str(tmp_path)


def test_build_mounts_the_ca_bundle_from_its_file_and_options_reach_docker(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "ca.pem"
    command = docker_cli.build_command(
        "docker", Variant.gpu, "t", METADATA, ca_bundle=bundle, no_cache=True, host_network=True
    )
    assert contains(command, ["--secret", f"id={CA_BUNDLE_SECRET_ID},src={bundle}"])
    assert contains(command, ["--network", "host"])
    assert "--no-cache" in command
    if Variant.gpu.spec.target:
        assert contains(command, ["--target", Variant.gpu.spec.target])
    plain = docker_cli.build_command("docker", Variant.gpu, "t", METADATA)
    assert "--secret" not in plain and "--network" not in plain and "--no-cache" not in plain


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8000/m.onnx", True),
        ("http://127.0.0.1:8000/m.onnx", True),
        ("http://[::1]:8000/m.onnx", True),
        ("https://models.example.com/m.onnx", False),
        ("", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert docker_cli.on_loopback(url) is loopback


def test_the_client_is_docker_env_then_debian_s_then_path_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = tmp_path / "docker"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert docker_cli.docker_binary({"DOCKER": "/opt/docker", "PATH": str(tmp_path)}) == (
        "/opt/docker"
    )
    monkeypatch.setattr(docker_cli, "_BUILDKIT_CLIENT", tmp_path / "none")
    assert docker_cli.docker_binary({"PATH": str(tmp_path)}) == str(on_path)
    monkeypatch.setattr(docker_cli, "_BUILDKIT_CLIENT", on_path)
    assert docker_cli.docker_binary({"PATH": "/nowhere"}) == str(on_path)


# ---- local: a recording docker -------------------------------------------------------------


class FakeDocker:
    """Stands in for local.Docker: answers from `replies` (by the docker subcommand), records
    every command line."""

    def __init__(self, replies: dict[str, list[tuple[int, str, str]]] | None = None) -> None:
        self.binary = "docker"
        self.env: dict[str, str] = {}
        self.calls: list[list[str]] = []
        self.replies = replies or {}

    def run(self, command: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = list(command)
        self.calls.append(args)
        verb = args[1] if args[0] == self.binary else "script"
        queue = self.replies.get(verb)
        code, out, err = queue.pop(0) if queue and len(queue) > 1 else (queue or [(0, "", "")])[0]
        return subprocess.CompletedProcess(args, code, out, err)

    def output(self, *args: str) -> str:
        done = self.run([self.binary, *args])
        if done.returncode != 0:
            raise local.JobError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()

    def require_engine(self) -> None:
        return None


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDocker]:
    fake = FakeDocker({"push": [(0, f"latest: digest: {DIGEST} size: 1\n", "")]})
    monkeypatch.setattr(local, "Docker", lambda: fake)
    yield fake


def pushed(docker: FakeDocker) -> list[str]:
    return [call[2] for call in docker.calls if call[1] == "push"]


def git(tags: str = "", head: str = "a" * 40) -> object:
    def answer(*args: str) -> str:
        return {"tag": tags, "rev-parse": head}.get(args[0], "")

    return answer


def test_push_tags_a_variant_as_publish_would(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_git", git("v1.2.3\nv2.0.0\n"))
    lines = local.push("onnx-serving:gpu", "ghcr.io/acme/serving", "v1.5.0", Variant.gpu)
    # v2.0.0 exists: latest stays where it is
    assert pushed(docker) == [
        "ghcr.io/acme/serving:1.5.0-gpu",
        "ghcr.io/acme/serving:1.5-gpu",
        "ghcr.io/acme/serving:1-gpu",
    ]
    assert lines == [f"{ref}@{DIGEST}" for ref in pushed(docker)]


def test_push_of_edge_gets_the_edge_tags(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_git", git(head="abcdef0" + "1" * 33))
    local.push("onnx-serving:cpu", "localhost:5000/serving", "edge", Variant.cpu)
    assert pushed(docker) == ["localhost:5000/serving:edge", "localhost:5000/serving:sha-abcdef0"]


def test_push_takes_localhost_and_refuses_a_bare_repository(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_git", git())
    local.push("onnx-serving:cpu", "localhost/serving", "v1.0.0", Variant.cpu)
    assert pushed(docker)[0] == "localhost/serving:1.0.0"
    with pytest.raises(local.JobError, match="expected REGISTRY/REPOSITORY"):
        local.push("onnx-serving:cpu", "acme/serving", "v1.0.0", Variant.cpu)


def test_a_failed_push_fails_the_job_even_after_a_digest_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeDocker({"push": [(1, f"1.0.0: digest: {DIGEST} size: 1\n", "denied")]})
    monkeypatch.setattr(local, "Docker", lambda: fake)
    monkeypatch.setattr(local, "_git", git())
    with pytest.raises(
        local.JobError, match=re.escape("docker push ghcr.io/acme/serving:1.0.0: denied")
    ):
        local.push("onnx-serving:cpu", "ghcr.io/acme/serving", "v1.0.0", Variant.cpu)


@pytest.mark.parametrize(
    ("image", "variant"),
    [
        ("onnx-serving:gpu", Variant.gpu),
        ("onnx-serving:basic", Variant.basic),
        ("onnx-serving:latest", Variant.cpu),
        ("ghcr.io/acme/other:gpu", Variant.cpu),
    ],
)
def test_the_variant_of_a_local_tag(image: str, variant: Variant) -> None:
    assert local.variant_of(image) is variant


@pytest.mark.parametrize(
    ("text", "ok"), [("1", True), ("65535", True), ("65536", False), ("0", False)]
)
def test_port_numbers(text: str, ok: bool) -> None:
    if ok:
        assert local._port(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            local._port(text)


# ---- local: test-image and the health wait ---------------------------------------------------


@pytest.mark.parametrize(("code", "passes"), [("0", True), ("143", False), ("137", False)])
def test_test_image_passes_only_a_graceful_exit(
    monkeypatch: pytest.MonkeyPatch, code: str, passes: bool
) -> None:
    fake = FakeDocker(
        {
            "port": [(0, "127.0.0.1:32768\n", "")],
            "inspect": [(0, code + "\n", "")],
        }
    )
    monkeypatch.setattr(local, "Docker", lambda: fake)
    monkeypatch.setattr(local, "wait_healthy", lambda docker, name: None)
    monkeypatch.setattr(local, "smoke", lambda *args: None)
    if passes:
        local.test_image("onnx-serving:cpu")
    else:
        with pytest.raises(local.JobError, match=f"exited {code} on SIGTERM"):
            local.test_image("onnx-serving:cpu")
    assert fake.calls[-1][:3] == ["docker", "rm", "--force"]  # cleaned up either way


def test_the_health_wait_stops_at_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker({"inspect": [(0, "running/starting", ""), (0, "running/unhealthy", "")]})
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr("onnx_serving.local.time.sleep", sleep)
    monkeypatch.setattr("onnx_serving.local.time.monotonic", lambda: clock[0])
    with pytest.raises(local.JobError, match=r"not healthy \(running/unhealthy\)"):
        local.wait_healthy(fake, "c")  # type: ignore[arg-type]
    inspects = [call for call in fake.calls if call[1] == "inspect"]
    assert len(inspects) == 2
    assert clock[0] < local.HEALTHY_TIMEOUT_S


# ---- local: labels, CA bundle, build -----------------------------------------------------------


def test_the_models_label_names_every_served_version(tmp_path: Path) -> None:
    found = []
    for name, version in [("mlp", "1"), ("mlp", "2"), ("lookup", "3")]:
        path = tmp_path / name / version / "model.onnx"
        path.parent.mkdir(parents=True)
        path.write_bytes(f"{name}{version}".encode())
        found.append(
            ModelIdentity(name, int(version), hashlib.sha256(path.read_bytes()).hexdigest())
        )
    for skipped in ("0", "latest"):  # never served
        path = tmp_path / "mlp" / skipped / "model.onnx"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    assert local.models_identity(tmp_path) == models_label(found)


def test_an_empty_ca_bundle_is_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("CA_BUNDLE", str(bundle))
    assert local.ca_bundle() is None
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert local.ca_bundle() == bundle


@pytest.mark.parametrize(
    ("url", "host_network"),
    [("http://127.0.0.1:9000/mlp.onnx", True), ("https://models.example.com/mlp.onnx", False)],
)
def test_a_build_fetching_from_loopback_runs_in_the_host_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, host_network: bool
) -> None:
    fake = FakeDocker()
    monkeypatch.setattr(local, "BUILD_LOG", tmp_path / "build.log")
    monkeypatch.setattr(local, "checkout_metadata", lambda: METADATA)
    monkeypatch.delenv("BASE_IMAGE", raising=False)
    options = ModelOptions(url=url, sha256="e" * 64)
    assert local.build(fake, Variant.cpu, options=options) == "onnx-serving:cpu"  # type: ignore[arg-type]
    (build,) = [call for call in fake.calls if call[1:2] == ["build"]]
    assert contains(build, ["--network", "host"]) is host_network
    assert f"--build-arg=MODEL_URL={url}" in build


def test_the_health_wait_stops_when_the_container_stopped_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container that exited (a bad model) has no verdict to wait for: one look, then the
    error with its state, never the whole HEALTHY_TIMEOUT_S."""
    fake = FakeDocker({"inspect": [(0, "exited/starting", "")]})
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr("onnx_serving.local.time.sleep", sleep)
    monkeypatch.setattr("onnx_serving.local.time.monotonic", lambda: clock[0])
    with pytest.raises(local.JobError, match=r"not healthy \(exited/starting\)"):
        local.wait_healthy(fake, "c")  # type: ignore[arg-type]
    assert [call[1] for call in fake.calls] == ["inspect", "logs"]  # the logs' tail shown
    assert clock[0] == 0.0


# ---- local: serve ----------------------------------------------------------------------------


@pytest.fixture
def serving(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeDocker, list[str]]]:
    """`serve` with the recording docker; building, the health wait and the smoke test are
    recorded by name only."""
    steps: list[str] = []

    def build(docker: object, variant: Variant, **_: object) -> str:
        steps.append("build")
        return variant.local_tag

    monkeypatch.setattr(local, "build", build)
    monkeypatch.setattr(local, "wait_healthy", lambda docker, name: steps.append("healthy"))

    def smoke(*args: object) -> None:  # whatever else it is given, the URL it smoke-tests
        (url,) = [a for a in args if isinstance(a, str) and a.startswith("127.0.0.1:")]
        steps.append(f"smoke {url}")

    monkeypatch.setattr(local, "smoke", smoke)
    yield docker, steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_replaces_its_own_previous_container_then_runs_on_the_port(
    serving: tuple[FakeDocker, list[str]],
) -> None:
    docker, steps = serving
    port = free_port()
    local.serve(port, "my-srv")
    assert docker.calls[0] == ["docker", "rm", "--force", "my-srv"]
    (run,) = [call for call in docker.calls if call[1] == "run"]
    assert contains(run, ["--name", "my-srv"])
    assert contains(run, ["--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}"])
    assert steps == ["build", "healthy", f"smoke 127.0.0.1:{port}"]


def test_serve_refuses_a_busy_port_before_building(serving: tuple[FakeDocker, list[str]]) -> None:
    docker, steps = serving
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(local.JobError, match=f"127.0.0.1:{port} is already in use"):
            local.serve(port, "my-srv")
    assert steps == []
    assert [call[1] for call in docker.calls] == ["rm"]


# ---- local: exit codes and the build context ----------------------------------------------------


def test_a_failed_job_exits_1_with_one_line_a_bad_command_line_exits_2(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(local, "_git", git())
    assert local.main(["push", "onnx-serving:cpu", "acme/serving", "v1.0.0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("push: invalid destination 'acme/serving'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        local.main(["push", "onnx-serving:cpu", "ghcr.io/acme/serving", "v1.0.0", "--variant", "x"])
    assert usage.value.code == 2
    assert "unknown variant 'x'" in capsys.readouterr().err


def test_baked_models_are_readable_by_the_image_s_user(tmp_path: Path) -> None:
    """Whatever the host's modes, the models copied into the build context can be read (and
    their folders entered) by the image's unprivileged user, and by nobody written."""
    models = tmp_path / "models"
    model = models / "mlp" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"onnx")
    model.chmod(0o600)
    model.parent.chmod(0o700)
    with local.build_context(models, ModelOptions().checked(True)) as context:
        baked = Path(context) / "models"
        modes = {
            path.relative_to(baked).as_posix(): path.stat().st_mode & 0o777
            for path in baked.rglob("*")
        }
    assert modes == {"mlp": 0o755, "mlp/1": 0o755, "mlp/1/model.onnx": 0o644}


def test_every_docker_call_has_buildkit_on_whatever_the_caller_set() -> None:
    env = docker_cli.docker_env({"DOCKER_BUILDKIT": "0", "PATH": "/somewhere"})
    assert env == {"DOCKER_BUILDKIT": "1", "PATH": "/somewhere"}


def test_a_failing_docker_call_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client wrapper (local.Docker), over a stand-in client that fails with several
    lines of output: the job's error is the command and the last of them."""
    client = tmp_path / "docker"
    client.write_text(
        "#!/bin/sh\necho 'progress' >&2\necho 'Error: No such object: x' >&2\nexit 1\n"
    )
    client.chmod(0o755)
    monkeypatch.setenv("DOCKER", str(client))
    docker = local.Docker()
    with pytest.raises(local.JobError) as failed:
        docker.output("inspect", "x")
    assert str(failed.value) == "docker inspect x: Error: No such object: x"
    with pytest.raises(local.JobError) as no_engine:
        docker.require_engine()
    assert str(no_engine.value) == (
        f"no Docker engine answers {client}: Error: No such object: x "
        "(./scripts/setup.sh starts one)"
    )
