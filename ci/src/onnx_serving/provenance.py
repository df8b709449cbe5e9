"""SLSA build provenance (v1) of each pushed platform image, as an in-toto statement whose
subject is that platform's manifest digest: what was built (the variant's Dockerfile target,
for which platform), from what (the source commit, the base image, every model file by
sha256), with which parameters (the release's version and tags), by which run.

`publish` attaches the statement to the platform manifest (attachments.py) and, where it
signs, attests its predicate with cosign (`--type slsaprovenance1`); docs/REGISTRY_GUIDE.md
has the commands that read and verify both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .images import ImageMetadata
from .models import parse_models_label
from .variants import Variant

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What `buildType` names: this repository's `publish` (its parameters are defined there).
BUILD_TYPE = "urn:onnx-serving:dagger-publish:v1"
# The builder of a run outside CI (no run URL given): whoever ran `dagger call publish`.
LOCAL_BUILDER = "urn:onnx-serving:builder:local"


@dataclass(frozen=True)
class BuildRun:
    """What one `publish` call knows of itself: the image metadata, the release version and
    tags, and the CI run's URL (empty outside CI)."""

    metadata: ImageMetadata
    version: str
    run_url: str


def predicate(
    run: BuildRun, variant: Variant, platform: str, tags: list[str], base_image: str
) -> dict[str, object]:
    """The SLSA provenance predicate of one platform image."""
    metadata = run.metadata
    dependencies: list[dict[str, object]] = []
    if metadata.revision:
        source = f"git+{metadata.source_url}" if metadata.source_url else "git"
        commit = {"gitCommit": metadata.revision}
        dependencies.append({"uri": f"{source}@{metadata.revision}", "digest": commit})
    if base_image:
        name, _, digest = base_image.partition("@")
        entry: dict[str, object] = {"uri": _purl(name)}
        if digest.startswith("sha256:"):
            entry["digest"] = {"sha256": digest.removeprefix("sha256:")}
        dependencies.append(entry)
    for model in parse_models_label(metadata.models):
        dependencies.append(
            {
                "name": f"models/{model.name}/{model.version}/model.onnx",
                "digest": {"sha256": model.sha256},
            }
        )
    external = {
        "variant": variant.value,
        "platform": platform,
        "version": run.version,
        "tags": tags,
        "dockerfile": variant.spec.dockerfile,
        "target": variant.spec.target,
    }
    if metadata.fetch.url:
        external["modelUrl"] = metadata.fetch.url
    # The builder is stable (a verifier allow-lists it): this repository's workflows; the
    # run that built the image is the invocation.
    builder = f"{metadata.source_url}/.github/workflows" if metadata.source_url else ""
    run_details: dict[str, object] = {
        "builder": {"id": builder if run.run_url and builder else LOCAL_BUILDER}
    }
    if run.run_url:
        run_details["metadata"] = {"invocationId": run.run_url}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": {"created": metadata.created} if metadata.created else {},
            "resolvedDependencies": dependencies,
        },
        "runDetails": run_details,
    }


def _purl(reference: str) -> str:
    """An image reference (`name[:tag]`, no digest) as a package URL, as BuildKit's
    provenance names its base images: pkg:docker/NAME@TAG, a registry host as a qualifier."""
    name, tag = reference, "latest"
    if ":" in reference.rsplit("/", 1)[-1]:
        name, _, tag = reference.rpartition(":")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"pkg:docker/{rest}@{tag}?repository_url={first}"
    return f"pkg:docker/{name}@{tag}"


def statement(repository: str, digest: str, provenance: dict[str, object]) -> bytes:
    """The in-toto statement of `provenance` about the image `repository@digest`."""
    document = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": provenance,
    }
    return json.dumps(document, indent=2).encode()
