"""local_engine.registry against a real registry: Debian's docker-registry on 127.0.0.1:5000.

Two tiny images are built FROM scratch (no base image), pushed as an index, pulled back by
digest with Docker and read with `docker create` + `docker cp`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_engine.registry import Credentials, RegistryError, index_of, push, resolve
from tests.engine.private_registry import PASSWORD, USERNAME, listening

pytestmark = pytest.mark.docker

DOCKER = "/usr/bin/docker"
REGISTRY = "127.0.0.1:5000"
PLATFORMS = ("linux/amd64", "linux/arm64")


def docker(*args: str, **options: str) -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "1", **options}
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """platform -> local image id of a scratch image holding /hello.txt naming its platform."""
    if not listening(5000):
        pytest.skip(f"no registry listens on {REGISTRY} (./scripts/setup.sh test starts one)")
    built: dict[str, str] = {}
    tags: list[str] = []
    for platform in PLATFORMS:
        context = tmp_path_factory.mktemp("context")
        (context / "hello.txt").write_text(f"hello from {platform}\n")
        (context / "Dockerfile").write_text('FROM scratch\nCOPY hello.txt /\nCMD ["/x"]\n')
        iidfile = context / "iid"
        # A tag of its own keeps it while pulls of the same image come and go.
        tag = f"local-engine-test-{uuid.uuid4().hex[:12]}:{platform.split('/')[1]}"
        docker(
            "build",
            "--quiet",
            "--platform",
            platform,
            "--tag",
            tag,
            "--iidfile",
            str(iidfile),
            str(context),
        )
        built[platform] = iidfile.read_text().strip()
        tags.append(tag)
    yield built
    for tag in tags:
        subprocess.run([DOCKER, "rmi", tag], capture_output=True)


def unique_address(tag: str = "v1") -> str:
    return f"{REGISTRY}/local-engine-test/{uuid.uuid4().hex[:12]}:{tag}"


def pairs(images: dict[str, str]) -> list[tuple[str, str]]:
    return [(platform, images[platform]) for platform in PLATFORMS]


def read_back(reference: str, platform: str, tmp_path: Path) -> tuple[str, str]:
    """(architecture, /hello.txt) of the image Docker pulls for that reference."""
    docker("pull", "--platform", platform, reference)
    try:
        architecture = docker("image", "inspect", "--format", "{{.Architecture}}", reference)
        container = docker("create", "--platform", platform, reference)
        try:
            target = tmp_path / f"hello-{uuid.uuid4().hex[:6]}.txt"
            docker("cp", f"{container}:/hello.txt", str(target))
            return architecture, target.read_text()
        finally:
            docker("rm", container)
    finally:
        subprocess.run([DOCKER, "rmi", reference], capture_output=True)


def test_an_index_is_pushed_and_docker_pulls_each_platform_by_digest(
    images: dict[str, str], tmp_path: Path
) -> None:
    address = unique_address()

    published = push(address, pairs(images), index=True, annotations={"org.example.k": "v"})

    name, digest = published.split("@")
    assert name == address and digest.startswith("sha256:")
    document = index_of(address)
    assert document is not None
    assert document["mediaType"] == "application/vnd.oci.image.index.v1+json"
    listed = [(m["platform"]["os"], m["platform"]["architecture"]) for m in document["manifests"]]
    assert listed == [("linux", "amd64"), ("linux", "arm64")]
    for platform in PLATFORMS:
        _, manifest = resolve(address, platform)
        assert manifest["annotations"] == {"org.example.k": "v"}
        by_digest = f"{address.rsplit(':', 1)[0]}@{digest}"
        architecture, hello = read_back(by_digest, platform, tmp_path)
        assert (architecture, hello) == (platform.split("/")[1], f"hello from {platform}\n")


def test_pushing_again_or_under_another_tag_gives_the_same_digest(images: dict[str, str]) -> None:
    address = unique_address()
    first = push(address, pairs(images), index=True)
    second = push(address, pairs(images), index=True)
    other_tag = address.rsplit(":", 1)[0] + ":latest"
    third = push(other_tag, pairs(images), index=True)

    assert first == second
    assert third.split("@")[1] == first.split("@")[1]
    assert resolve(other_tag, "linux/arm64") == resolve(address, "linux/arm64")


def test_a_single_image_is_a_manifest_under_the_tag(images: dict[str, str], tmp_path: Path) -> None:
    address = unique_address()

    published = push(address, [("linux/arm64", images["linux/arm64"])], index=False)

    assert index_of(address) is None
    digest, manifest = resolve(address, "linux/arm64")
    assert published == f"{address}@{digest}"
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert read_back(published, "linux/arm64", tmp_path) == ("arm64", "hello from linux/arm64\n")
    with pytest.raises(RegistryError, match="not for linux/amd64"):
        resolve(address, "linux/amd64")


def test_an_image_of_another_platform_is_refused_before_any_push(images: dict[str, str]) -> None:
    address = unique_address()

    with pytest.raises(RegistryError, match="not linux/amd64"):
        push(address, [("linux/amd64", images["linux/arm64"])], index=False)
    with pytest.raises(RegistryError, match=r"HTTP 404"):
        index_of(address)


def test_basic_auth_pushes_with_the_right_password_and_fails_with_a_wrong_one(
    images: dict[str, str], private_registry: str
) -> None:
    address = f"{private_registry}/private/app:v1"
    right = Credentials(USERNAME, PASSWORD)

    published = push(address, pairs(images), index=True, credentials=right)

    assert published.startswith(f"{address}@sha256:")
    with pytest.raises(RegistryError, match=rf"{address}: .*HTTP 401"):
        push(address, pairs(images), index=True, credentials=Credentials(USERNAME, "wrong"))
    with pytest.raises(RegistryError, match="HTTP 401"):
        index_of(address)
