"""A release interrupted after its first push, through the local engine: `publish` against a
registry that refuses the floating tags fails in one line naming the refused address, with
only the immutable tag pushed (its index annotated, each platform image given its SBOM and
provenance, whose subject is that image's digest) and the floating tags still naming the
earlier release. The same `publish` run again with another --created, so a build of other
bytes (as a fresh engine's may be), finishes the release: the immutable tag keeps the first
build, with its documents, and every floating tag names that digest. Each pushed manifest
carries the OCI annotations of the image: its labels (title, version, revision, created,
licenses, models) and the variant's description.

The refusing registry is a small proxy in this test, in front of the registry on
127.0.0.1:5000: it answers 403 DENIED to a manifest PUT under a refused tag (as a registry
with tag rules, or a revoked token, does) and forwards everything else.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local_engine import registry
from onnx_serving.variants import Variant

from .private_registry import listening
from .test_pipeline_functions import REVISION, ok, pipeline, published
from .test_registry_push import REGISTRY, docker

pytestmark = pytest.mark.docker

FLOATING = ("11.22", "11", "latest")
EARLIER = "11.22.32"  # the release the floating tags name before this one
CREATED = "2026-01-02T03:04:05Z"
LATER = "2026-02-03T04:05:06Z"
# The annotations each pushed manifest repeats from the image's labels (the description is
# the variant's own, checked apart).
LABELLED = (
    *(f"org.opencontainers.image.{key}" for key in ("title", "version", "revision", "created")),
    *("org.opencontainers.image.licenses", "io.onnx-serving.models"),
)
_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")
_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive"}


class RefusingRegistry(ThreadingHTTPServer):
    """The registry on 127.0.0.1:5000, refusing manifest PUTs under the tags in `refused`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.refused: set[str] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RefusingRegistry

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        manifest = _MANIFEST.fullmatch(urlsplit(self.path).path)
        if self.command == "PUT" and manifest and manifest["reference"] in self.server.refused:
            self.rfile.read(length)
            body = json.dumps(
                {"errors": [{"code": "DENIED", "message": "this tag is not pushed now"}]}
            ).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", 5000, timeout=600)
        # The Host header goes on as is: the registry's Location URLs come back to this proxy.
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():
            upstream.putheader(key, value)
        upstream.endheaders()
        remaining = length
        while remaining:  # a layer can be hundreds of MB: streamed on, not held
            chunk = self.rfile.read(min(remaining, 1 << 20))
            upstream.send(chunk)
            remaining -= len(chunk)
        reply = upstream.getresponse()
        body = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in _HOP_BY_HOP and (
                self.command == "HEAD" or key.lower() != "content-length"
            ):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test asserts on the registry, not on this log


@pytest.fixture
def refusing_registry() -> Iterator[RefusingRegistry]:
    if not listening(5000):
        pytest.skip(f"no registry listens on {REGISTRY} (./scripts/setup.sh test starts one)")
    proxy = RefusingRegistry()
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)
    serving.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def earlier_release(repository: str, tmp_path: Path) -> str:
    """Push a tiny image as release 11.22.32 of `repository`, its floating tags on it (as
    the release before this one left them); its digest."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    iid = tmp_path / "iid"
    docker("build", "--quiet", "--platform", "linux/amd64", "--iidfile", str(iid), str(tmp_path))
    address = f"{REGISTRY}/{repository}"
    image_id = iid.read_text().strip()
    pushed = registry.push(f"{address}:{EARLIER}", [("linux/amd64", image_id)], index=True)
    docker("image", "rm", image_id)
    digest = pushed.rsplit("@", 1)[1]
    for tag in FLOATING:
        registry.retag(f"{address}:{tag}", digest)
    return digest


def annotations_and_labels(address: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Each platform manifest's annotations and its image's labels, under a pushed index."""
    index = registry.index_of(address)
    assert index is not None
    found = []
    for entry in index["manifests"]:
        platform = f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        _, manifest = registry.resolve(address, platform)
        assert entry["annotations"] == manifest["annotations"]  # the index entry repeats them
        repository = address.split("/", 1)[1].rsplit(":", 1)[0]
        blob = f"http://{REGISTRY}/v2/{repository}/blobs/{manifest['config']['digest']}"
        with urllib.request.urlopen(blob) as reply:
            labels = json.load(reply)["config"]["Labels"]
        found.append((manifest["annotations"], labels))
    return found


def attached(repository: str, address: str) -> dict[str, dict[str, str]]:
    """Per platform image under a pushed index: artifact type -> digest of each document
    attached to it (listed under its `sha256-<hex>` tag: this registry has no referrers
    API), after checking each names that image as its subject and what a provenance says."""
    index = registry.index_of(address)
    assert index is not None
    found = {}
    for entry in index["manifests"]:
        platform = f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        listing = read(repository, f"manifests/{entry['digest'].replace(':', '-')}")
        kinds = {e["artifactType"]: e["digest"] for e in listing["manifests"]}
        assert set(kinds) == {"application/vnd.cyclonedx+json", "application/vnd.in-toto+json"}
        for artifact_type, digest in kinds.items():
            artifact = read(repository, f"manifests/{digest}")
            assert artifact["subject"]["digest"] == entry["digest"]  # this platform's image
            document = read(repository, f"blobs/{artifact['layers'][0]['digest']}")
            if artifact_type == "application/vnd.in-toto+json":
                assert document["subject"][0]["digest"] == {
                    "sha256": entry["digest"].removeprefix("sha256:")
                }
                parameters = document["predicate"]["buildDefinition"]["externalParameters"]
                assert (parameters["platform"], parameters["version"]) == (platform, "11.22.33")
            else:
                assert document["bomFormat"] == "CycloneDX"
                assert document["components"]  # an SBOM of the image's packages
        found[platform] = kinds
    assert set(found) == {"linux/amd64", "linux/arm64"}
    return found


def read(repository: str, path: str) -> dict[str, Any]:
    """A JSON document of the registry on 127.0.0.1:5000 (not through the proxy)."""
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repository}/{path}", headers={"Accept": registry.ACCEPT}
    )
    with urllib.request.urlopen(request) as reply:
        document: dict[str, Any] = json.load(reply)
    return document


def tags_in(repository: str) -> dict[str, str]:
    """The registry's tags of `repository` (read directly, not through the proxy) -> digest."""
    with urllib.request.urlopen(f"http://{REGISTRY}/v2/{repository}/tags/list") as reply:
        tags: list[str] = json.load(reply)["tags"] or []
    found = {}
    for tag in tags:
        head = urllib.request.Request(
            f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": registry.ACCEPT},
        )
        with urllib.request.urlopen(head) as reply:
            found[tag] = reply.headers["Docker-Content-Digest"]
    return found


def test_an_interrupted_release_moves_no_floating_tag_and_a_rerun_finishes_it(
    refusing_registry: RefusingRegistry, base_image: str, tmp_path: Path
) -> None:
    repository = f"engine-test/release-{uuid.uuid4().hex[:8]}"
    earlier = earlier_release(repository, tmp_path)
    release = [
        *("--offline-scan", f"--revision={REVISION}", f"--created={CREATED}"),
        *("publish", "--tag", "v11.22.33", "--variants", "cpu"),
        *("--registry", refusing_registry.address, "--repository", repository),
    ]
    refusing_registry.refused.update(FLOATING)
    interrupted = pipeline(*release)
    assert interrupted.returncode != 0
    # The first floating tag was refused: the error says which address, in one line.
    refused = f"push {refusing_registry.address}/{repository}:11.22 failed: "
    assert [line for line in interrupted.stderr.splitlines() if refused in line], (
        interrupted.stderr[-4000:]
    )
    first = {k: v for k, v in tags_in(repository).items() if not k.startswith("sha256-")}
    # Only the immutable tag was pushed; every floating tag still names the earlier release.
    assert first == {
        "11.22.33": first["11.22.33"],
        EARLIER: earlier,
        **dict.fromkeys(FLOATING, earlier),
    }
    assert first["11.22.33"] != earlier

    documents = attached(repository, f"{REGISTRY}/{repository}:11.22.33")

    # The rerun builds other bytes (another --created: other labels), as a fresh engine may;
    # the immutable tag keeps the first build, and the floating tags move to it.
    refusing_registry.refused.clear()
    rebuilt = [f"--created={LATER}" if a.startswith("--created=") else a for a in release]
    rerun = published(ok(pipeline(*rebuilt)))
    assert set(rerun) == {"11.22.33", *FLOATING}
    assert set(rerun.values()) == {first["11.22.33"]}  # the same digest as the first push
    tags = {k: v for k, v in tags_in(repository).items() if not k.startswith("sha256-")}
    assert tags == {EARLIER: earlier, **dict.fromkeys(rerun, first["11.22.33"])}
    assert attached(repository, f"{REGISTRY}/{repository}:11.22.33") == documents  # kept

    index = registry.index_of(f"{REGISTRY}/{repository}:11.22.33")
    assert index is not None
    assert index["annotations"] == index["manifests"][0]["annotations"]  # the index's own
    pushed = annotations_and_labels(f"{REGISTRY}/{repository}:11.22.33")
    assert len(pushed) == 2  # linux/amd64 and linux/arm64
    for notes, labels in pushed:
        assert {key: labels[key] for key in LABELLED} == {key: notes[key] for key in LABELLED}
        assert notes["org.opencontainers.image.version"] == "11.22.33"
        assert notes["org.opencontainers.image.revision"] == REVISION
        assert notes["org.opencontainers.image.created"] == CREATED
        assert notes["io.onnx-serving.models"].startswith("mlp/1@sha256:")
        description = notes.pop("org.opencontainers.image.description")
        assert description == Variant.cpu.spec.description
        assert set(notes) == set(LABELLED)  # no --source-url: no source annotation
