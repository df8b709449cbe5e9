"""scripts/ for users without Dagger, run for real: build.sh --models with the worked
scikit-learn export, test-image.sh on the result, and push.sh to the local registry with the
same tags `publish` gives, pulled back by digest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onnx_serving.tags import edge_tags, image_tags
from onnx_serving.variants import Variant
from tests.images.docker_support import REPO, Container, Docker
from tests.images.serving import run_smoke, served_models
from tests.models_for_tests import repository_models

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"  # Debian's docker-registry, started by scripts/setup.sh


def script(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / args[0]), *args[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )


@pytest.mark.timeout(2400)
def test_a_scikit_learn_model_is_built_into_an_image_that_passes_test_image(
    docker: Docker, base_image: str, tmp_path: Path
) -> None:
    exported = subprocess.run(
        [sys.executable, "examples/sklearn_export.py", "--output", str(tmp_path / "models")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "iris/1/model.onnx" in exported.stdout
    built = script("build.sh", "--models", str(tmp_path / "models"), "cpu")
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    assert "models from" in built.stdout and "(iris)" in built.stdout

    tested = script("test-image.sh", Variant.cpu.local_tag, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr[-3000:]
    assert "smoke: OK" in tested.stdout and "model=iris" in tested.stdout
    assert "label[2]" in tested.stdout  # the BYTES output, one string per row
    assert f"test-image: OK {Variant.cpu.local_tag}" in tested.stdout


def test_test_image_fails_in_one_line_on_a_missing_image() -> None:
    done = script("test-image.sh", "images-no-such-image:1", timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "test-image: no local image 'images-no-such-image:1' "
        "(./scripts/build.sh builds onnx-serving:cpu)"
    ]


@pytest.mark.timeout(2400)
def test_push_uses_the_release_tags_and_the_digest_pulls_back(
    docker: Docker, built_image: Callable[[Variant], str], start_container: Callable[..., Container]
) -> None:
    image = built_image(Variant.gpu)
    repository = f"{REGISTRY}/images-test/scripts"
    done = script("push.sh", image, repository, "v900.1.2", "--variant", "gpu", timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    expected = image_tags("v900.1.2", "-gpu")
    assert [line.split("@")[0] for line in lines] == [f"{repository}:{t}" for t in expected]
    digests = {line.split("@")[1] for line in lines}
    assert len(digests) == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", digests.pop())

    by_digest = f"{repository}@{lines[0].split('@')[1]}"
    docker.run("rmi", *(line.split("@")[0] for line in lines))
    docker.run("pull", by_digest, timeout=900)
    container = start_container(by_digest, "--read-only")
    container.wait_healthy()
    # The image pulled back serves what models/ holds (the repository it was built from).
    assert served_models(container.url) == repository_models(REPO / "models")
    smoke = run_smoke(container.url)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="edge tags name the checkout's commit")
def test_push_edge_names_the_commit(built_image: Callable[[Variant], str]) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    done = script("push.sh", built_image(Variant.cpu), f"{REGISTRY}/images-test/edge", "edge")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    tags = [line.split("@")[0].rpartition(":")[2] for line in done.stdout.strip().splitlines()]
    assert tags == edge_tags(head)


@pytest.mark.parametrize(
    ("destination", "version", "named"),
    [
        ("onnx-serving", "v1.0.0", "'onnx-serving'"),  # no registry host
        (f"{REGISTRY}/Bad Name", "v1.0.0", "'Bad Name'"),
        (f"{REGISTRY}/ok", "latest", "'latest'"),  # a floating tag is not a release
    ],
)
def test_push_refuses_bad_arguments_before_pushing(
    destination: str, version: str, named: str
) -> None:
    done = script("push.sh", "images-no-such-image:1", destination, version, timeout=120)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert named in line
