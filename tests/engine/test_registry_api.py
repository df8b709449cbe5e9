"""The registry calls `publish` makes itself (registry_api.py, attachments.py), against a real
registry with a login (Debian's docker-registry, htpasswd; tests/engine/private_registry.py):
a manifest put under a tag reads back as the very same bytes, a missing tag is None, a wrong
login is one line naming the registry's answer; documents attached to a manifest are listed
under its `sha256-<hex>` tag (this registry serves no referrers API), one per artifact type,
and attaching again keeps the first."""

from __future__ import annotations

import json

import pytest

from onnx_serving import attachments
from onnx_serving.registry_api import OCI_INDEX, OCI_MANIFEST, Manifest, Registry, RegistryError

from .private_registry import PASSWORD, USERNAME

pytestmark = pytest.mark.docker

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})


def _image(registry: Registry) -> Manifest:
    """A layerless image manifest, its config uploaded; stored by digest."""
    config = CONFIG.encode()
    digest = registry.upload(config)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(config),
        },
        "layers": [],
    }
    manifest = Manifest(OCI_MANIFEST, json.dumps(document).encode())
    assert registry.put(manifest.digest, manifest) == manifest.digest
    return manifest


def test_a_manifest_put_under_a_tag_reads_back_as_the_same_bytes(private_registry: str) -> None:
    registry = Registry(private_registry, "acme/onnx", USERNAME, PASSWORD)
    image = _image(registry)
    entry = {**image.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}}
    index = Manifest(
        OCI_INDEX,
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode(),
    )
    for tag in ("1.2.3", "latest"):
        assert registry.put(tag, index) == index.digest
        found = registry.get(tag)
        assert found is not None and found.body == index.body and found.is_index
    assert registry.get("9.9.9") is None
    assert registry.get(image.digest) == image


def test_a_refused_login_is_one_line_naming_the_answer(private_registry: str) -> None:
    registry = Registry(private_registry, "acme/onnx", USERNAME, "wrong")
    with pytest.raises(RegistryError) as refused:
        registry.get("latest")
    assert str(refused.value).startswith(
        f"read {private_registry}/acme/onnx:latest failed: HTTP 401"
    )
    assert "\n" not in str(refused.value)


def test_documents_are_attached_once_per_type_and_listed_under_the_subject(
    private_registry: str,
) -> None:
    registry = Registry(private_registry, "acme/onnx", USERNAME, PASSWORD)
    image = _image(registry)
    sbom = attachments.Document(attachments.CYCLONEDX, "sbom.cdx.json", b'{"bomFormat": "x"}')
    statement = attachments.Document(attachments.IN_TOTO, "provenance.intoto.json", b"{}")
    first = attachments.attach(registry, image, sbom)
    second = attachments.attach(registry, image, statement)
    again = attachments.Document(attachments.CYCLONEDX, "sbom.cdx.json", b'{"bomFormat": "y"}')
    assert attachments.attach(registry, image, again) == first  # the first SBOM is kept
    assert registry.referrers(image.digest) is None  # no referrers API: the tag lists them
    listed = attachments.referrers(registry, image.digest)
    assert [(e["artifactType"], e["digest"]) for e in listed] == [
        (attachments.CYCLONEDX, first),
        (attachments.IN_TOTO, second),
    ]
    artifact = registry.get(first)
    assert artifact is not None
    document = artifact.document
    assert document["subject"] == image.descriptor()
    assert document["config"]["mediaType"] == attachments.EMPTY_TYPE
    [layer] = document["layers"]
    assert layer["annotations"] == {attachments.TITLE: "sbom.cdx.json"}
    assert layer["size"] == len(b'{"bomFormat": "x"}')
