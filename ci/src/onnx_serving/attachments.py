"""Documents attached to a pushed image manifest as OCI 1.1 referrers, as `oras attach` does:
an artifact manifest whose `subject` is the image manifest holds one document (an SBOM, a
provenance statement) as its only layer. Registries that serve the referrers API list it
there; for the others the `sha256-<hex>` tag holds an index of a subject's referrers (the
OCI distribution spec's tag schema), which this module keeps.

A document already attached under the same artifact type is left as it is: a rerun of a
release keeps what its first run attached, and attaches what that run did not get to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .registry_api import OCI_INDEX, OCI_MANIFEST, Manifest, Registry

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
CYCLONEDX = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Document:
    """One file to attach: its artifact type (what it is) and its file name."""

    artifact_type: str
    title: str
    data: bytes


def fallback_tag(digest: str) -> str:
    """The tag under which a registry without the referrers API lists `digest`'s referrers."""
    return digest.replace(":", "-", 1)


def referrers(registry: Registry, digest: str) -> list[dict[str, Any]]:
    """The descriptors of what is attached to `digest` (referrers API, else the tag)."""
    index = registry.referrers(digest)
    if index is None:
        listed = registry.get(fallback_tag(digest))
        index = listed.document if listed is not None else {}
    return list(index.get("manifests") or [])


def attach(registry: Registry, subject: Manifest, document: Document) -> str:
    """Attach `document` to `subject` (unless one of its type already is); the digest of
    the artifact manifest that holds it."""
    for found in referrers(registry, subject.digest):
        if found.get("artifactType") == document.artifact_type:
            return str(found["digest"])
    config = {"mediaType": EMPTY_TYPE, "digest": registry.upload(EMPTY), "size": len(EMPTY)}
    layer = {
        "mediaType": document.artifact_type,
        "digest": registry.upload(document.data),
        "size": len(document.data),
        "annotations": {TITLE: document.title},
    }
    artifact = Manifest(
        OCI_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": document.artifact_type,
                "config": config,
                "layers": [layer],
                "subject": subject.descriptor(),
            }
        ),
    )
    registry.put(artifact.digest, artifact)
    if registry.referrers(subject.digest) is None:
        _list_in_fallback_tag(registry, subject.digest, artifact, document.artifact_type)
    return artifact.digest


def _list_in_fallback_tag(
    registry: Registry, subject: str, artifact: Manifest, artifact_type: str
) -> None:
    tag = fallback_tag(subject)
    listed = registry.get(tag)
    entries = list(listed.document.get("manifests") or []) if listed is not None else []
    if any(entry.get("digest") == artifact.digest for entry in entries):
        return
    entries.append({**artifact.descriptor(), "artifactType": artifact_type})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    registry.put(tag, Manifest(OCI_INDEX, _json(index)))


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()
