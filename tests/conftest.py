"""Shared Docker fixtures: a real engine, the four images built once per session, containers.

Tests marked `docker` need an engine: without one they are skipped, or FAIL when
REQUIRE_DOCKER=1 (.ci/run and the Dagger `test` check that GitHub runs both set it), so a
broken CI machine cannot pass by skipping. Every run ends with a count of what was skipped
and why (pytest_terminal_summary).

    def test_x(built_image, start_container):      # marked docker
        container = start_container(built_image(Variant.cpu), "--read-only")
        container.wait_healthy()                     # Docker's own HEALTHCHECK says healthy
        ...                                          # talk to it at container.url (127.0.0.1:PORT)

Everything this creates is named `images-…`; containers are removed after each test.
Images are built with BuildKit (docker_cli.build_command), the build args in METADATA and
the `ca_bundle` secret = this host's CA bundle plus LEAK_CANARY lines, so tests can prove the
secret reached pip (the build downloads through the proxy) but no layer. The helpers and
constants live in tests/images/docker_support.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onnx_serving import docker_cli
from onnx_serving.images import CONTAINER_PORT
from onnx_serving.local import base_image as base_image_of
from onnx_serving.variants import Variant
from tests.images.docker_support import (
    BASE_IMAGES,
    IMAGE_REPOSITORY,
    LEAK_CANARY,
    Container,
    Docker,
    docker_problem,
    host_ca_bundle,
    unique_name,
)
from tests.mutmut_site import sitecustomize as mutmut_site

# Under mutmut (scripts/mutation.sh) subprocesses load tests/mutmut_site/sitecustomize.py. In
# its stats run they record the mutated functions they call in files of _HITS_DIR; this
# process reads each file on (_hits_read) and keeps each process's calls up to its first
# reading (start-up, app.py's routes): every later test that reaches it depends on them too.
_HITS_DIR: Path | None = None
_hits_read: dict[Path, int] = {}
_startup_hits: dict[Path, set[str]] = {}
_saved_env: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    global _HITS_DIR
    mode = os.environ.get("MUTANT_UNDER_TEST")
    if mode is None:
        return
    _saved_env.update({key: os.environ.get(key) for key in ("PYTHONPATH", mutmut_site.HITS_DIR)})
    tests = Path(__file__).parent
    # The mutated ci/src too: `python -m onnx_serving.loadgen` would import the installed one.
    paths = [tests / "mutmut_site", tests.parent / "ci" / "src"]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*map(str, paths), _saved_env["PYTHONPATH"]])
    )
    if mode == "stats":
        # mutmut keeps the mode in-process too; subprocesses get it from mutmut_site, so a
        # child with a PYTHONPATH of its own runs plainly instead of failing to record.
        del os.environ["MUTANT_UNDER_TEST"]
        _hits_read.clear()
        _startup_hits.clear()
        _HITS_DIR = Path(tempfile.mkdtemp(prefix="mutmut-hits-"))
        os.environ[mutmut_site.HITS_DIR] = str(_HITS_DIR)


def pytest_unconfigure(config: pytest.Config) -> None:
    """mutmut runs pytest several times in one process: each run starts afresh."""
    global _HITS_DIR
    if _HITS_DIR is not None:
        shutil.rmtree(_HITS_DIR, ignore_errors=True)
        _HITS_DIR = None
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Credit the calls server subprocesses made during this test to it (before mutmut's own
    teardown hook files the calls of this test)."""
    if _HITS_DIR is None:
        return
    from mutmut.stats import record_trampoline_hit

    for path, names in mutmut_site.new_hits(_HITS_DIR, _hits_read).items():
        startup = _startup_hits.setdefault(path, names)
        for name in names | startup if names else ():
            record_trampoline_hit(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """The last lines of every run: how many tests did not run, and why, so that a partial
    run (no engine, no GPU, a missing tool, -m/-k) is never mistaken for a full one."""
    yield
    skipped = terminalreporter.stats.get("skipped", [])
    deselected = len(terminalreporter.stats.get("deselected", []))
    reasons = Counter(_skip_reason(report) for report in skipped)
    write = terminalreporter.write_line
    write(f"not run: {len(skipped)} skipped, {deselected} deselected", bold=bool(skipped))
    for reason, count in reasons.most_common():
        write(f"  {count} skipped: {reason}")
    if deselected:
        write(f"  {deselected} deselected by -m/-k")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def docker() -> Docker:
    problem = docker_problem()
    if problem is not None:  # also reached by unmarked tests that request the fixture
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    binary = docker_cli.docker_binary()
    assert binary is not None
    return Docker(binary, {**docker_cli.docker_env(), "DOCKER": binary})


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """The base images the Dockerfiles start FROM, present locally: already there, pulled, or
    a Debian stand-in built. Returns the cpu variant's."""
    for image in BASE_IMAGES:
        docker.ensure_image(image)
    return base_image_of(Variant.cpu)


@pytest.fixture(scope="session")
def build_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `ca_bundle` build secret: the host CA bundle wrapped in canary comment lines
    (PEM readers ignore text outside BEGIN/END blocks, so pip still trusts the bundle)."""
    path = tmp_path_factory.mktemp("secret") / "ca-bundle.pem"
    bundle = host_ca_bundle().read_text()
    path.write_text(f"# {LEAK_CANARY}\n{bundle}\n# {LEAK_CANARY}\n")
    return path


@pytest.fixture(scope="session")
def built_image(docker: Docker, base_image: str, build_secret: Path) -> Callable[[Variant], str]:
    """built_image(variant) -> tag; each image is built at most once per session."""
    tags: dict[Variant, str] = {}

    def build(variant: Variant) -> str:
        if variant not in tags:
            tag = f"{IMAGE_REPOSITORY}:test-{variant.value}"
            docker.build(variant, tag, build_secret)
            tags[variant] = tag
        return tags[variant]

    return build


@pytest.fixture
def start_container(docker: Docker) -> Iterator[Callable[..., Container]]:
    """start_container(image, *docker_run_args, command=()) -> Container; removed afterwards."""
    started: list[str] = []

    def start(image: str, *run_args: str, command: tuple[str, ...] = ()) -> Container:
        name = unique_name()
        started.append(name)
        docker.run(
            "run",
            "--detach",
            "--name",
            name,
            "--publish",
            f"127.0.0.1::{CONTAINER_PORT}",  # docker picks a free loopback port
            *run_args,
            image,
            *command,
        )
        mapping = docker.output("port", name, f"{CONTAINER_PORT}/tcp").splitlines()[0]
        return Container(docker, name, mapping.replace("0.0.0.0", "127.0.0.1"))

    yield start
    for name in started:
        docker.run("rm", "--force", "--volumes", name, check=False)
