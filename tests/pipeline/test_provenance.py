"""The SLSA provenance of a platform image (provenance.py): an in-toto statement about that
image's manifest digest, naming the commit, the base image and every model file by digest,
the release's version and tags, and the CI run that built it (a local builder otherwise)."""

from __future__ import annotations

import json

from onnx_serving import provenance
from onnx_serving.images import ImageMetadata
from onnx_serving.models import ModelOptions
from onnx_serving.variants import Variant

REVISION = "0123456789abcdef0123456789abcdef01234567"
MODEL = "a" * 64
BASE = "python:3.11-slim-bookworm@sha256:" + "b" * 64
RUN = "https://github.com/acme/onnx/actions/runs/42/attempts/1"
METADATA = ImageMetadata(
    revision=REVISION,
    created="2026-01-02T03:04:05Z",
    source_url="https://github.com/acme/onnx",
    models=f"mlp/1@sha256:{MODEL},mlp/2@sha256:{'c' * 64}",
)


def test_the_statement_is_about_the_platform_image_digest() -> None:
    predicate = provenance.predicate(
        provenance.BuildRun(METADATA, "1.2.3", RUN), Variant.cpu, "linux/arm64", ["1.2.3"], BASE
    )
    statement = json.loads(
        provenance.statement("ghcr.io/acme/onnx", "sha256:" + "d" * 64, predicate)
    )
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "ghcr.io/acme/onnx", "digest": {"sha256": "d" * 64}}]
    assert statement["predicate"] == predicate


def test_the_predicate_names_what_was_built_from_what_by_whom() -> None:
    run = provenance.BuildRun(METADATA, "1.2.3", RUN)
    predicate = provenance.predicate(
        run, Variant.gpu, "linux/amd64", ["1.2.3-gpu", "latest-gpu"], BASE
    )
    definition = predicate["buildDefinition"]
    assert isinstance(definition, dict)
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["externalParameters"] == {
        "variant": "gpu",
        "platform": "linux/amd64",
        "version": "1.2.3",
        "tags": ["1.2.3-gpu", "latest-gpu"],
        "dockerfile": Variant.gpu.spec.dockerfile,
        "target": Variant.gpu.spec.target,
    }
    assert definition["internalParameters"] == {"created": "2026-01-02T03:04:05Z"}
    assert definition["resolvedDependencies"] == [
        {"uri": f"git+https://github.com/acme/onnx@{REVISION}", "digest": {"gitCommit": REVISION}},
        {"uri": "pkg:docker/python@3.11-slim-bookworm", "digest": {"sha256": "b" * 64}},
        {"name": "models/mlp/1/model.onnx", "digest": {"sha256": MODEL}},
        {"name": "models/mlp/2/model.onnx", "digest": {"sha256": "c" * 64}},
    ]
    # The builder is the repository's workflows (stable, to allow-list); the run the invocation.
    assert predicate["runDetails"] == {
        "builder": {"id": "https://github.com/acme/onnx/.github/workflows"},
        "metadata": {"invocationId": RUN},
    }


def test_a_local_run_a_model_url_and_an_unpinned_base_are_said_as_they_are() -> None:
    fetched = ModelOptions("scorer", 1, "https://example.invalid/m.onnx", MODEL)
    metadata = ImageMetadata(models=f"scorer/1@sha256:{MODEL}", fetch=fetched)
    run = provenance.BuildRun(metadata, "0.0.0-dev", "")
    base = "127.0.0.1:5000/library/python:3.11-slim"
    predicate = provenance.predicate(run, Variant.cpu, "linux/amd64", [], base)
    definition = predicate["buildDefinition"]
    assert isinstance(definition, dict)
    assert definition["externalParameters"]["modelUrl"] == "https://example.invalid/m.onnx"
    assert definition["resolvedDependencies"] == [
        # No digest: none is claimed; the registry a qualifier of the package URL.
        {"uri": "pkg:docker/library/python@3.11-slim?repository_url=127.0.0.1:5000"},
        {"name": "models/scorer/1/model.onnx", "digest": {"sha256": MODEL}},
    ]
    assert predicate["runDetails"] == {"builder": {"id": provenance.LOCAL_BUILDER}}
