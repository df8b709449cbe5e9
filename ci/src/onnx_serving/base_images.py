"""Base-image stand-ins for other platforms, served by a local registry mirror.

With no container registry reachable, scripts/ensure_image.sh builds the Dockerfiles'
base images (`python:3.11-slim-bookworm`, ...) from Debian packages and imports them into
the local engine. A classic dockerd image store holds one image per tag, so a
`docker build --platform linux/arm64` cannot find an arm64 base under that name. Instead the
stand-ins are published, as one multi-platform OCI index per tag, to a registry on loopback
under Docker Hub's path (`library/python:3.11-slim-bookworm`), which dockerd uses as its
`registry-mirrors` entry for docker.io (scripts/setup.sh): BuildKit then resolves the
arm64 base from the mirror, while amd64 builds keep using the local image.

This is only for stand-ins: an image that came from a real registry is never mirrored (the
mirror would shadow the real multi-platform image). Stdlib only, plain HTTP to loopback.

    python3 -m onnx_serving.base_images bases PLATFORM            # published variants' bases
    python3 -m onnx_serving.base_images missing REGISTRY IMAGE PLATFORM...   # to build first
    python3 -m onnx_serving.base_images publish REGISTRY IMAGE [PLATFORM=ROOTFS.tar ...]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import ipaddress
import json
import platform as host
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import docker_cli
from .local import base_image
from .variants import Variant

STAND_IN_COMMENT = "stand-in for "  # how scripts/ensure_image.sh marks what it built
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Debian architecture names, as debootstrap takes them, for each platform.
DEBIAN_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


class BaseImageError(Exception):
    """A one-line reason, printed by main()."""


def native_platform() -> str:
    machine = host.machine().lower()
    return {"x86_64": "linux/amd64", "amd64": "linux/amd64"}.get(machine, "linux/arm64")


def oci_platform(name: str) -> dict[str, str]:
    """OCI platform fields, with the variant Docker Hub's arm64 images carry."""
    os_name, arch = name.split("/", 1)
    fields = {"architecture": arch, "os": os_name}
    return fields | ({"variant": "v8"} if arch == "arm64" else {})


def repository_and_tag(image: str) -> tuple[str, str]:
    """`python:3.11-slim` -> (`library/python`, `3.11-slim`): Docker Hub's path for it."""
    name, _, tag = image.partition(":")
    first = name.split("/", 1)[0]
    if "@" in image or not tag or "." in first or ":" in first or first == "localhost":
        raise BaseImageError(f"'{image}' is not a Docker Hub name:tag (e.g. python:3.11-slim)")
    return (name if "/" in name else f"library/{name}"), tag


@dataclass(frozen=True)
class Registry:
    """The distribution API of a registry on loopback, over plain HTTP."""

    address: str  # host:port

    def __post_init__(self) -> None:
        hostname = self.address.rpartition(":")[0].strip("[]")
        try:
            loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise BaseImageError(f"registry '{self.address}' is not on loopback (127.0.0.1:PORT)")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.address, timeout=300)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except OSError as exc:
            raise BaseImageError(f"registry {self.address}: {exc}") from exc
        finally:
            connection.close()

    def manifest(self, repository: str, reference: str) -> dict[str, Any] | None:
        status, _, body = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        if status == 404:
            return None
        if status != 200:
            raise BaseImageError(f"registry {self.address}: GET {reference}: HTTP {status}")
        document: dict[str, Any] = json.loads(body)
        return document

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        status, _, text = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body,
            {"Content-Type": media_type, "Content-Length": str(len(body))},
        )
        if status != 201:
            raise BaseImageError(f"registry {self.address}: PUT manifest: HTTP {status} {text!r}")
        return digest_of(body)

    def push_blob(self, repository: str, digest: str, path: Path) -> None:
        status, _, _ = self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if status == 200:
            return
        status, headers, text = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"}
        )
        location = {k.lower(): v for k, v in headers.items()}.get("location", "")
        if status != 202 or not location:
            raise BaseImageError(f"registry {self.address}: start upload: HTTP {status} {text!r}")
        target = location.split(self.address, 1)[-1]  # absolute or relative Location
        target += ("&" if "?" in target else "?") + f"digest={digest}"
        with path.open("rb") as blob:
            size = str(path.stat().st_size)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": size}
            status, _, text = self.request("PUT", target, blob, headers)
        if status != 201:
            raise BaseImageError(
                f"registry {self.address}: upload {digest}: HTTP {status} {text!r}"
            )


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _gzip_layer(source: BinaryIO, out: Path) -> tuple[str, str]:
    """Compress a layer tar, fast (the registry is on loopback); (diff_id, blob digest)."""
    diff = hashlib.sha256()
    with (
        out.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed,
    ):
        while chunk := source.read(1 << 20):
            diff.update(chunk)
            packed.write(chunk)
    return "sha256:" + diff.hexdigest(), _file_digest(out)


@dataclass(frozen=True)
class Image:
    """One platform's image, ready to push: a config and gzipped layers."""

    config: bytes
    layers: list[Path]


def saved_image(docker: str, image: str, work: Path) -> tuple[dict[str, Any], Image]:
    """The local engine's image (`docker save`), with its config as a dict."""
    out = work / "saved"
    with subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            archive.extractall(out, filter="data")
    if proc.returncode != 0:
        raise BaseImageError(f"docker save {image} failed ({proc.returncode})")
    [entry] = json.loads((out / "manifest.json").read_text())
    config = (out / entry["Config"]).read_bytes()
    layers = []
    for number, layer in enumerate(entry["Layers"]):
        with (out / layer).open("rb") as tar:
            layers.append(work / f"native-{number}.tar.gz")
            _gzip_layer(tar, layers[-1])
    return json.loads(config), Image(config, layers)


def rootfs_image(native: dict[str, Any], name: str, rootfs: Path, work: Path) -> Image:
    """A one-layer image of a rootfs tar for platform `name`, with the native stand-in's
    runtime config (Env, Cmd): built the same way, for another architecture."""
    layer = work / f"{name.replace('/', '-')}.tar.gz"
    with rootfs.open("rb") as tar:
        diff_id, _ = _gzip_layer(tar, layer)
    config = {
        **oci_platform(name),
        "created": native.get("created"),
        "config": native.get("config", {}),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": native.get("created"), "comment": native.get("comment", "")}],
    }
    return Image(json.dumps(config, sort_keys=True).encode(), [layer])


def push_image(registry: Registry, repository: str, image: Image) -> dict[str, Any]:
    """Push blobs and the manifest (by digest); the index entry that names it."""
    work = image.layers[0].parent
    config_path = work / "config.json"
    config_path.write_bytes(image.config)
    registry.push_blob(repository, digest_of(image.config), config_path)
    descriptors = []
    for layer in image.layers:
        digest = _file_digest(layer)
        registry.push_blob(repository, digest, layer)
        descriptors.append({"mediaType": OCI_LAYER, "digest": digest, "size": layer.stat().st_size})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": digest_of(image.config),
            "size": len(image.config),
        },
        "layers": descriptors,
    }
    body = json.dumps(manifest).encode()
    digest = registry.put_manifest(repository, digest_of(body), OCI_MANIFEST, body)
    config = json.loads(image.config)
    platform = {"architecture": config["architecture"], "os": config["os"]}
    platform |= {"variant": config["variant"]} if config.get("variant") else {}
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "platform": platform}


def _platform_name(entry: dict[str, Any]) -> str:
    return f"{entry['platform']['os']}/{entry['platform']['architecture']}"


def published(registry: Registry, image: str) -> dict[str, dict[str, Any]]:
    """The index entries the registry holds for `image`, by platform name."""
    repository, tag = repository_and_tag(image)
    index = registry.manifest(repository, tag)
    if index is None or "manifests" not in index:
        return {}
    return {_platform_name(m): m for m in index["manifests"] if "platform" in m}


def _native_config_digest(registry: Registry, image: str, entry: dict[str, Any]) -> str | None:
    repository, _ = repository_and_tag(image)
    manifest = registry.manifest(repository, entry["digest"])
    return None if manifest is None else str(manifest["config"]["digest"])


def local_stand_in(docker: str, image: str) -> tuple[str, bool]:
    """(image ID, whether scripts/ensure_image.sh built it) of the local image."""
    done = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}} {{.Comment}}", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BaseImageError(f"{image} is not in the local engine (scripts/ensure_image.sh)")
    image_id, _, comment = done.stdout.strip().partition(" ")
    return image_id, comment.startswith(STAND_IN_COMMENT)


def missing(registry: Registry, docker: str, image: str, platforms: list[str]) -> list[str]:
    """The other platforms whose stand-in must be built before `publish`."""
    _, stand_in = local_stand_in(docker, image)
    if not stand_in:
        return []
    have = published(registry, image)
    return [p for p in platforms if p != native_platform() and p not in have]


def publish(registry: Registry, docker: str, image: str, rootfs: dict[str, Path]) -> str:
    """Publish `image` as an index: the local (native) stand-in, each given rootfs, and the
    platforms the registry already holds for it. Returns a one-line summary."""
    image_id, stand_in = local_stand_in(docker, image)
    if not stand_in:
        return f"{image} came from a registry, which serves its other platforms: not mirrored"
    repository, tag = repository_and_tag(image)
    entries = published(registry, image)
    native = native_platform()
    with tempfile.TemporaryDirectory(prefix="base-images-") as tmp:
        work = Path(tmp)
        current = native in entries and (
            _native_config_digest(registry, image, entries[native]) == image_id
        )
        native_config: dict[str, Any] | None = None
        if not current or rootfs:
            native_config, native_image = saved_image(docker, image, work)
            if not current:
                entries[native] = push_image(registry, repository, native_image)
        for name, tar in rootfs.items():
            if name == native:
                raise BaseImageError(f"{name} is this host's platform: it comes from the engine")
            assert native_config is not None
            folder = work / name.replace("/", "-")
            folder.mkdir()
            entries[name] = push_image(
                registry, repository, rootfs_image(native_config, name, tar, folder)
            )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entries[name] for name in sorted(entries)],
    }
    body = json.dumps(index).encode()
    digest = registry.put_manifest(repository, tag, OCI_INDEX, body)
    return f"{registry.address}/{repository}:{tag}@{digest} ({', '.join(sorted(entries))})"


def bases(platform: str) -> list[str]:
    """The base images of the published variants built for `platform` (what `publish` builds;
    a stand-in of the full python:3.11-bookworm takes far longer under emulation)."""
    return sorted(
        {base_image(v) for v in Variant if v.spec.published and platform in v.spec.platforms}
    )


def _rootfs_argument(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if name not in DEBIAN_ARCH or not path:
        raise argparse.ArgumentTypeError(f"expected PLATFORM=ROOTFS.tar, got '{text}'")
    return name, Path(path)


def _platform_argument(text: str) -> str:
    if text not in DEBIAN_ARCH:
        raise argparse.ArgumentTypeError(f"unknown platform '{text}' ({', '.join(DEBIAN_ARCH)})")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="base_images", description=__doc__.split("\n\n")[0])
    jobs = parser.add_subparsers(dest="job", required=True)
    jobs.add_parser("bases").add_argument("platform", type=_platform_argument)
    for job in ("missing", "publish"):
        sub = jobs.add_parser(job)
        sub.add_argument("registry")
        sub.add_argument("image")
        if job == "missing":
            sub.add_argument("platforms", nargs="+", type=_platform_argument)
        else:
            sub.add_argument("rootfs", nargs="*", type=_rootfs_argument)
    args = parser.parse_args(argv)
    try:
        if args.job == "bases":
            print("\n".join(bases(args.platform)))
            return 0
        docker = docker_cli.docker_binary()
        if docker is None or shutil.which(docker) is None:
            raise BaseImageError("no docker client found (install docker.io, or set DOCKER=...)")
        registry = Registry(args.registry)
        if args.job == "missing":
            for name in missing(registry, docker, args.image, args.platforms):
                print(name, DEBIAN_ARCH[name])
        else:
            print(publish(registry, docker, args.image, dict(args.rootfs)))
    except BaseImageError as exc:
        print(f"base_images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
