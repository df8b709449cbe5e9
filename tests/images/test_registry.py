"""Publish for real: push to the local registry (127.0.0.1:5000), pull by digest, run."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from onnx_serving.variants import Variant
from tests.images.docker_support import Container, Docker
from tests.images.serving import run_smoke

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"  # Debian's docker-registry, started by scripts/setup.sh


@pytest.fixture
def registry_repository(docker: Docker) -> Iterator[str]:
    try:
        socket.create_connection(("127.0.0.1", 5000), timeout=5).close()
    except OSError:
        pytest.fail(f"no registry on {REGISTRY}: run scripts/setup.sh test", pytrace=False)
    repository = f"{REGISTRY}/images-test/onnx-serving"
    yield repository
    # Untag only what this test added (the image itself stays under its session tag).
    listing = "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}"
    for ref in docker.output("image", "ls", "--digests", "--format", listing, repository).split():
        if not ref.endswith((":<none>", "@<none>")):
            docker.run("rmi", ref, check=False)


def test_push_pull_by_digest_and_run(
    docker: Docker,
    built_image: Callable[[Variant], str],
    registry_repository: str,
    start_container: Callable[..., Container],
) -> None:
    ref = f"{registry_repository}:{uuid.uuid4().hex[:8]}"
    docker.run("tag", built_image(Variant.cpu), ref)
    pushed = docker.output("push", ref, timeout=600)
    match = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert match, pushed
    by_digest = f"{registry_repository}@{match.group(1)}"

    docker.run("rmi", ref)  # drop the tag: the pull must resolve the digest at the registry
    pulled = docker.output("pull", by_digest, timeout=600)
    assert match.group(1) in pulled, pulled
    assert by_digest in docker.output(
        "image", "inspect", "--format", "{{json .RepoDigests}}", by_digest
    )

    container = start_container(by_digest, "--read-only")
    container.wait_healthy()
    smoke = run_smoke(container.url)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
