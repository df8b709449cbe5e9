"""Base-image stand-ins for linux/arm64 (ci/src/onnx_serving/base_images.py): published to the
registry on 127.0.0.1:5000 as one index per tag under Docker Hub's path, which the engine
scripts/setup.sh starts uses as its docker.io mirror, so `docker build --platform linux/arm64`
finds an arm64 base while the local image of the same name stays the amd64 one."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onnx_serving.base_images import (
    BaseImageError,
    Registry,
    missing,
    native_platform,
    publish,
    published,
    repository_and_tag,
)
from onnx_serving.local import base_image
from onnx_serving.variants import ARM64, Variant
from tests.images.docker_support import Docker, unique_name

REGISTRY = "127.0.0.1:5000"  # Debian's docker-registry, started by scripts/setup.sh
MIRROR = f"http://{REGISTRY}"
HANDLER = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ("python:3.11-slim-bookworm", ("library/python", "3.11-slim-bookworm")),
        ("acme/base:1", ("acme/base", "1")),
    ],
)
def test_an_image_is_published_under_docker_hubs_path(image: str, path: tuple[str, str]) -> None:
    assert repository_and_tag(image) == path


@pytest.mark.parametrize("image", ["127.0.0.1:5000/x:1", "python", "python@sha256:" + "0" * 64])
def test_only_docker_hub_names_with_a_tag_are_mirrored(image: str) -> None:
    with pytest.raises(BaseImageError, match="is not a Docker Hub name:tag"):
        repository_and_tag(image)


def test_only_a_registry_on_loopback_is_written_to() -> None:
    with pytest.raises(BaseImageError, match="not on loopback"):
        Registry("example.invalid:5000")


# ---- against the registry and the engine ----------------------------------------------------


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return out.getvalue()


def blob(registry: Registry, repository: str, digest: str) -> bytes:
    status, _, body = registry.request("GET", f"/v2/{repository}/blobs/{digest}")
    assert status == 200, (digest, status)
    return body


def config_of(registry: Registry, repository: str, entry: dict[str, Any]) -> dict[str, Any]:
    manifest = registry.manifest(repository, entry["digest"])
    assert manifest is not None
    config: dict[str, Any] = json.loads(blob(registry, repository, manifest["config"]["digest"]))
    return config | {"_layers": manifest["layers"]}


@pytest.fixture
def registry() -> Registry:
    try:
        socket.create_connection(("127.0.0.1", 5000), timeout=5).close()
    except OSError:
        pytest.fail(f"no registry on {REGISTRY}: run scripts/setup.sh test", pytrace=False)
    return Registry(REGISTRY)


@pytest.fixture
def local_image(docker: Docker, tmp_path: Path) -> Iterator[Any]:
    """import_image(tag, files, stand_in) -> image ID: a one-layer image made here."""
    made: list[str] = []

    def import_image(tag: str, files: dict[str, bytes], stand_in: bool = True) -> str:
        tar = tmp_path / f"{len(made)}.tar"
        tar.write_bytes(tar_of(files))
        comment = ["-m", f"stand-in for {tag}: test"] if stand_in else []
        made.append(tag)
        config = ["-c", "ENV MARK=base-images-test", "-c", 'CMD ["/hello"]']
        return docker.output("import", *config, *comment, str(tar), tag)

    yield import_image
    for tag in made:
        docker.run("rmi", tag, check=False)


@pytest.mark.docker
def test_publish_indexes_the_local_stand_in_and_an_arm64_rootfs(
    docker: Docker, registry: Registry, local_image: Any, tmp_path: Path
) -> None:
    image = f"{unique_name('images-test-base')}:1"
    repository = repository_and_tag(image)[0]
    native_id = local_image(image, {"hello": b"amd64"})
    rootfs = tmp_path / "arm64.tar"
    rootfs.write_bytes(tar_of({"hello": b"arm64"}))
    assert missing(registry, docker.binary, image, [ARM64]) == [ARM64]

    line = publish(registry, docker.binary, image, {ARM64: rootfs})
    assert line.startswith(f"{REGISTRY}/{repository}:1@sha256:")
    entries = published(registry, image)
    assert {name: e["platform"] for name, e in entries.items()} == {
        "linux/amd64": {"architecture": "amd64", "os": "linux"},
        "linux/arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    # amd64: the local image itself (its config digest is its ID); arm64: the rootfs given,
    # with the stand-in's runtime config.
    manifest = registry.manifest(repository, entries["linux/amd64"]["digest"])
    assert manifest is not None and manifest["config"]["digest"] == native_id
    arm64 = config_of(registry, repository, entries["linux/arm64"])
    assert (arm64["architecture"], arm64["os"]) == ("arm64", "linux")
    assert "MARK=base-images-test" in arm64["config"]["Env"]
    assert arm64["config"]["Cmd"] == ["/hello"]
    [layer] = arm64["_layers"]
    layer_tar = gzip.decompress(blob(registry, repository, layer["digest"]))
    assert layer_tar == rootfs.read_bytes()
    assert arm64["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]

    # Nothing left to build; a new local stand-in replaces amd64 and keeps the arm64 entry.
    assert missing(registry, docker.binary, image, [ARM64]) == []
    assert publish(registry, docker.binary, image, {}) == line
    new_id = local_image(image, {"hello": b"amd64, again"})
    publish(registry, docker.binary, image, {})
    again = published(registry, image)
    assert again["linux/arm64"] == entries["linux/arm64"]
    manifest = registry.manifest(repository, again["linux/amd64"]["digest"])
    assert manifest is not None and manifest["config"]["digest"] == new_id != native_id


@pytest.mark.docker
def test_an_image_from_a_registry_is_never_mirrored(
    docker: Docker, registry: Registry, local_image: Any
) -> None:
    # The mirror would shadow the real multi-platform image of the registry it came from.
    image = f"{unique_name('images-test-base')}:1"
    local_image(image, {"hello": b"pulled"}, stand_in=False)
    assert missing(registry, docker.binary, image, [ARM64]) == []
    assert "not mirrored" in publish(registry, docker.binary, image, {})
    assert published(registry, image) == {}


def emulation_problem(docker: Docker) -> str | None:
    """Why linux/arm64 builds cannot find their base or run here, or None."""
    if not HANDLER.exists() or "F" not in next(
        (line for line in HANDLER.read_text().splitlines() if line.startswith("flags:")), ""
    ):
        return f"no qemu-aarch64 binfmt handler with the F flag ({HANDLER})"
    mirrors = docker.output("info", "--format", "{{json .RegistryConfig.Mirrors}}")
    if MIRROR not in mirrors:
        return f"the Docker engine has no registry mirror {MIRROR} (mirrors: {mirrors})"
    return None


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_an_arm64_build_finds_its_base_in_the_mirror_and_runs_emulated(
    docker: Docker, registry: Registry, tmp_path: Path
) -> None:
    problem = emulation_problem(docker)
    if problem is not None:
        message = f"{problem}: run scripts/setup.sh test"
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    base = base_image(Variant.cpu)
    ensured = subprocess.run(
        ["scripts/ensure_image.sh", "--mirror", REGISTRY, base, ARM64],
        capture_output=True,
        text=True,
        timeout=1500,
        env=docker.env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert ensured.returncode == 0, ensured.stderr[-3000:]
    native_id = docker.output("image", "inspect", "--format", "{{.Id}}", base)
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN uname -m > /built-on\n")
    tag = f"{unique_name('images-test-base')}:arm64"
    try:
        docker.run("build", "--platform", ARM64, "-t", tag, str(tmp_path), timeout=900)
        arch = docker.output("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", tag)
        assert arch == ARM64
        script = "cat /built-on; uname -m; python3 -c 'import sys; print(sys.version_info[:2])'"
        ran = docker.output("run", "--rm", "--platform", ARM64, tag, "sh", "-c", script)
        assert ran.split("\n") == ["aarch64", "aarch64", "(3, 11)"]
    finally:
        docker.run("rmi", tag, check=False)
    # The engine still has this host's base under that name: native builds keep using it.
    assert docker.output("image", "inspect", "--format", "{{.Id}}", base) == native_id
    native_arch = native_platform().split("/")[1]
    assert docker.output("image", "inspect", "--format", "{{.Architecture}}", base) == native_arch
