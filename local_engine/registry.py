"""Push local Docker images to an OCI distribution registry the way `Container.publish` does.

Engine facts modelled (dagger v0.21.8):
- core/container.go `Publish`: the receiver plus `platformVariants` (empty containers dropped,
  `filterEmptyContainers`; a repeated platform is an error, `getVariantRefs`); the result is
  `reference.ParseNormalizedNamed(ref)` with the root digest: the tag is kept, short names
  are spelled out (`alpine:1` -> `docker.io/library/alpine:1@sha256:…`).
- core/container.go `useOCIMediaTypes`: OCI media types unless Docker ones are asked for.
- engine/engineutil/imageexport/writer.go `Assemble`: ONE platform gives a single manifest
  under the tag, two or more an index (its manifests sorted by platform, each with its
  platform); manifests and the index are JSON indented by two spaces.
- engine/engineutil/containerimage.go `buildExportRequest`: container annotations go on each
  manifest and on its descriptor in the index; `exportCommitOpts`: layers gzip by default.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class RegistryError(Exception):
    """A push or read that the registry (or the address) refused."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str
    normalized: str  # the name as the engine prints it, without tag or digest

    @property
    def base(self) -> str:
        scheme = "http" if self.host.rsplit(":", 1)[0] in _LOOPBACK else "https"
        # Docker Hub's API lives on another host than its name.
        host = "registry-1.docker.io" if self.host == "docker.io" else self.host
        return f"{scheme}://{host}/v2/{self.repository}"


def parse_reference(address: str) -> Reference:
    """Split `host/repo[:tag]` as docker/distribution's ParseNormalizedNamed does."""
    if "@" in address or not re.fullmatch(r"[A-Za-z0-9._:/\[\]-]+", address):
        raise RegistryError(f"{address}: not a name[:tag] reference to push to")
    name, tag = address, "latest"
    last = address.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = address[: -len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = "docker.io", name if rest else f"library/{name}"
    if repository != repository.lower() or not tag:
        raise RegistryError(f"{address}: repository names are lower case; tags are not empty")
    return Reference(host, repository, tag, f"{host}/{repository}")


@dataclass
class _Session:
    """HTTP with the registry's auth challenge answered once (Basic or Bearer token)."""

    ref: Reference
    address: str
    credentials: Credentials | None
    auth: str | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Mapping[str, str], bytes]:
        for _ in range(2):
            request = urllib.request.Request(url, data=body, method=method)
            for key, value in {**(headers or {}), **self._auth_header()}.items():
                request.add_header(key, value)
            status, reply, content = _send(request)
            if status == 401 and self.auth is None and self._answer(reply):
                if not isinstance(body, bytes | None):
                    body.seek(0)
                continue
            if status not in ok:
                what = f"{method} {urllib.parse.urlsplit(url).path}"
                raise RegistryError(f"{self.address}: {what} failed: HTTP {status}")
            return status, reply, content
        raise RegistryError(f"{self.address}: authentication failed: HTTP 401")

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": self.auth} if self.auth else {}

    def _answer(self, reply: Mapping[str, str]) -> bool:
        challenge = reply.get("www-authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials is not None:
            self.auth = "Basic " + _basic(self.credentials)
        elif scheme.lower() == "bearer":
            self.auth = "Bearer " + self._token(dict(re.findall(r'(\w+)="([^"]*)"', params)))
        return self.auth is not None

    def _token(self, challenge: dict[str, str]) -> str:
        """The token flow of the distribution spec: realm?service=…&scope=…."""
        scope = f"repository:{self.ref.repository}:pull,push"
        query = {
            "scope": scope,
            **({"service": challenge["service"]} if "service" in challenge else {}),
        }
        request = urllib.request.Request(f"{challenge['realm']}?{urllib.parse.urlencode(query)}")
        if self.credentials is not None:
            request.add_header("Authorization", "Basic " + _basic(self.credentials))
        status, _, content = _send(request)
        if status != 200:
            raise RegistryError(f"{self.address}: token request failed: HTTP {status}")
        reply = json.loads(content)
        return str(reply.get("token") or reply["access_token"])


def _basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return base64.b64encode(pair).decode()


def _send(request: urllib.request.Request) -> tuple[int, Mapping[str, str], bytes]:
    # Header names lower-cased: Go servers spell them Www-Authenticate.
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
    except OSError as error:
        url = request.full_url
        raise RegistryError(f"{url}: cannot reach the registry: {error}") from None


@dataclass(frozen=True)
class _Blob:
    path: Path
    digest: str
    size: int


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(document: Mapping[str, Any]) -> bytes:
    """Go's json.MarshalIndent(v, "", "  "), HTML characters escaped as Go does."""
    text = json.dumps(document, indent=2)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def _gzip(source: IO[bytes], target: Path) -> _Blob:
    """Deterministic gzip (no name, mtime 0): the same layer gives the same digest."""
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
    ):
        shutil.copyfileobj(source, zipped, 1 << 20)
    hasher = hashlib.sha256()
    with target.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            hasher.update(chunk)
    return _Blob(target, "sha256:" + hasher.hexdigest(), target.stat().st_size)


@dataclass(frozen=True)
class _Image:
    platform: str
    config: _Blob
    layers: list[_Blob]


def _platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"{text}: not a platform like linux/arm64")
    return {
        "architecture": parts[1],
        "os": parts[0],
        **({"variant": parts[2]} if len(parts) == 3 else {}),
    }


def _export(docker: str, image: str, platform: str, work: Path) -> _Image:
    """Config and gzipped layers of a local image, read from `docker save`."""
    archive = work / "image.tar"
    with archive.open("wb") as out:
        result = subprocess.run([docker, "save", image], stdout=out, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise RegistryError(f"{image}: docker save failed: {result.stderr.decode().strip()}")
    with tarfile.open(archive) as tar:
        entry = json.load(_member(tar, "manifest.json"))[0]
        config = _member(tar, entry["Config"]).read()
        layers = [
            _gzip(_member(tar, name), work / f"layer{n}.gz")
            for n, name in enumerate(entry["Layers"])
        ]
    settings = json.loads(config)
    wanted = _platform(platform)
    if (settings.get("os"), settings.get("architecture")) != (wanted["os"], wanted["architecture"]):
        raise RegistryError(
            f"{image}: is {settings.get('os')}/{settings.get('architecture')}, not {platform}"
        )
    config_path = work / "config.json"
    config_path.write_bytes(config)
    archive.unlink()
    return _Image(platform, _Blob(config_path, _digest(config), len(config)), layers)


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    extracted = tar.extractfile(name)
    if extracted is None:
        raise RegistryError(f"docker save wrote no file {name}")
    return extracted


def _upload(session: _Session, blob: _Blob) -> None:
    """Skip a blob the registry has; else one monolithic upload (POST then PUT)."""
    base = session.ref.base
    status, _, _ = session.request("HEAD", f"{base}/blobs/{blob.digest}", ok=(200, 404))
    if status == 200:
        return
    _, reply, _ = session.request("POST", f"{base}/blobs/uploads/", body=b"", ok=(202,))
    location = urllib.parse.urljoin(base, reply["location"])
    separator = "&" if "?" in location else "?"
    url = f"{location}{separator}{urllib.parse.urlencode({'digest': blob.digest})}"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
    with blob.path.open("rb") as data:
        session.request("PUT", url, body=data, headers=headers, ok=(201,))


def _put_manifest(session: _Session, reference: str, media_type: str, body: bytes) -> None:
    url = f"{session.ref.base}/manifests/{reference}"
    session.request("PUT", url, body=body, headers={"Content-Type": media_type}, ok=(201,))


def _manifest(image: _Image, annotations: Mapping[str, str]) -> bytes:
    layers = [
        {"mediaType": OCI_LAYER_GZIP, "digest": b.digest, "size": b.size} for b in image.layers
    ]
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": image.config.digest,
            "size": image.config.size,
        },
        "layers": layers,
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return _json(document)


def _index(manifests: list[tuple[_Image, bytes]], annotations: Mapping[str, str]) -> bytes:
    entries = []
    for image, body in manifests:
        entry: dict[str, Any] = {
            "mediaType": OCI_MANIFEST,
            "digest": _digest(body),
            "size": len(body),
        }
        if annotations:
            entry["annotations"] = dict(annotations)
        entry["platform"] = _platform(image.platform)
        entries.append(entry)
    return _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="local-engine-push-") as path:
        yield Path(path)


def push(
    address: str,
    images: Sequence[tuple[str, str]],
    *,
    index: bool,
    credentials: Credentials | None = None,
    annotations: Mapping[str, str] | None = None,
    docker: str = "/usr/bin/docker",
) -> str:
    """Push (platform, local image id) pairs under `address`; `name:tag@sha256:…` of the tag.

    `index` says whether the tag names an index (the engine pushes one for two or more
    platforms) or the single image's manifest.
    """
    ref = parse_reference(address)
    platforms = [platform for platform, _ in images]
    if not images or len(set(platforms)) != len(platforms) or (not index and len(images) != 1):
        raise RegistryError(
            f"{address}: one image, or distinct platforms for an index: {platforms}"
        )
    session = _Session(ref, address, credentials)
    pushed: list[tuple[_Image, bytes]] = []
    for platform, image_id in sorted(images):
        with _workdir() as work:
            image = _export(docker, image_id, platform, work)
            for blob in [image.config, *image.layers]:
                _upload(session, blob)
        body = _manifest(image, annotations or {})
        _put_manifest(session, _digest(body), OCI_MANIFEST, body)
        pushed.append((image, body))
    media_type, root = (
        (OCI_INDEX, _index(pushed, annotations or {})) if index else (OCI_MANIFEST, pushed[0][1])
    )
    _put_manifest(session, ref.tag, media_type, root)
    return f"{ref.normalized}:{ref.tag}@{_digest(root)}"


def retag(address: str, digest: str, credentials: Credentials | None = None) -> str:
    """Point `address`'s tag at a manifest or index already in its repository (by digest):
    what pushing the same images again under another tag amounts to."""
    ref = parse_reference(address)
    session = _Session(ref, address, credentials)
    _, reply, body = session.request(
        "GET", f"{ref.base}/manifests/{digest}", headers={"Accept": ACCEPT}
    )
    _put_manifest(session, ref.tag, reply.get("Content-Type", OCI_INDEX), body)
    return f"{ref.normalized}:{ref.tag}@{digest}"


def _get_manifest(session: _Session, reference: str) -> tuple[str, dict[str, Any]]:
    url = f"{session.ref.base}/manifests/{reference}"
    _, reply, body = session.request("GET", url, headers={"Accept": ACCEPT})
    return reply.get("docker-content-digest") or _digest(body), json.loads(body)


def index_of(address: str, credentials: Credentials | None = None) -> dict[str, Any] | None:
    """The index the tag names, or None when it names a single image."""
    ref = parse_reference(address)
    _, document = _get_manifest(_Session(ref, address, credentials), ref.tag)
    return document if document.get("mediaType") in INDEX_TYPES else None


def resolve(
    address: str, platform: str, credentials: Credentials | None = None
) -> tuple[str, dict[str, Any]]:
    """Digest and manifest of the image for `platform` under the tag (through an index)."""
    ref = parse_reference(address)
    session = _Session(ref, address, credentials)
    digest, document = _get_manifest(session, ref.tag)
    wanted = _platform(platform)
    if document.get("mediaType") in INDEX_TYPES:
        for entry in document["manifests"]:
            found = entry.get("platform", {})
            if all(found.get(key) == value for key, value in wanted.items()):
                return _get_manifest(session, entry["digest"])
        raise RegistryError(f"{address}: the index has no image for {platform}")
    _, _, config = session.request("GET", f"{ref.base}/blobs/{document['config']['digest']}")
    settings = json.loads(config)
    if (settings.get("os"), settings.get("architecture")) != (wanted["os"], wanted["architecture"]):
        raise RegistryError(f"{address}: the image is not for {platform}")
    return digest, document
