"""What the deploy tests share: a fake digest, the rendered set, and readers for it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from onnx_serving import manifests
from onnx_serving.variants import PUBLISHED, Variant

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
REPOSITORY = "ghcr.io/acme/onnx-serving"


def fake_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def image_of(variant: Variant) -> str:
    """What `publish` prints for the variant: tag and digest."""
    return f"{REPOSITORY}:1.2.3{variant.spec.tag_suffix}@{fake_digest(variant.value)}"


def pinned_of(variant: Variant) -> str:
    return f"{REPOSITORY}@{fake_digest(variant.value)}"


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def rendered(variant: Variant) -> dict[str, list[dict[str, Any]]]:
    """render() for the variant's fake published image: file -> its documents."""
    files = manifests.render(image_of(variant), variant)
    return {path.removeprefix(f"{variant.value}/"): documents(text) for path, text in files.items()}


def all_documents() -> Iterator[tuple[Variant, str, dict[str, Any]]]:
    for variant in PUBLISHED:
        for path, docs in rendered(variant).items():
            for doc in docs:
                yield variant, path, doc


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, or the pod-ish spec of a ServingRuntime."""
    spec: dict[str, Any] = doc["spec"]
    if doc["kind"] == "Deployment":
        pod: dict[str, Any] = spec["template"]["spec"]
        return pod
    return spec


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod_spec(doc).get("containers", [])
    return found


def workloads() -> Iterator[tuple[Variant, dict[str, Any]]]:
    """Every document that runs the image: Deployments and ServingRuntimes."""
    for variant, _, doc in all_documents():
        if doc["kind"] in ("Deployment", "ServingRuntime"):
            yield variant, doc
