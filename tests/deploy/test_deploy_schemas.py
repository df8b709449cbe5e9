"""Every rendered manifest against the schemas of its API, offline and strict.

Kubernetes resources: kubernetes-validate --strict (unknown fields fail) for each pinned
Kubernetes version (kubernetes.KUBERNETES_VERSIONS). KServe resources: the vendored CRD schemas
of kserve.KSERVE_RELEASE (tests/deploy/crds.py), closed against unknown fields, metadata as
Kubernetes' ObjectMeta, and each runtime container also as a core Container. Each validator
is shown to reject a broken copy, so a pass means something.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import referencing
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

from onnx_serving import manifests
from onnx_serving.deploy import kserve, kubernetes
from onnx_serving.variants import PUBLISHED, Variant

from . import crds
from .support import all_documents, containers, image_of, one, rendered

KUBERNETES = "kubernetes.yaml"
KSERVE_KINDS = {kind: plural for plural, (kind, _) in crds.CRDS.items()}
DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"


def _kubernetes_documents() -> list[tuple[Variant, dict[str, Any]]]:
    return [(v, d) for v, path, d in all_documents() if path == KUBERNETES]


def _kserve_documents() -> list[tuple[Variant, dict[str, Any]]]:
    return [(v, d) for v, path, d in all_documents() if path != KUBERNETES]


def _id(value: object) -> str:
    if isinstance(value, dict):
        return f"{value['kind']}/{value['metadata']['name']}"
    return str(value)


# ----- Kubernetes ---------------------------------------------------------------------------


def test_the_pinned_kubernetes_versions_are_bundled() -> None:
    bundled = set(all_versions())
    assert set(kubernetes.KUBERNETES_VERSIONS) <= bundled, sorted(bundled)


@pytest.mark.parametrize("version", kubernetes.KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("variant", "doc"), _kubernetes_documents(), ids=_id)
def test_kubernetes_resources_validate_strictly(
    version: str, variant: Variant, doc: dict[str, Any]
) -> None:
    # Raises SchemaNotFoundError for a kind it has no schema for: nothing passes unchecked.
    assert kubernetes_validate.validate(doc, version, strict=True) == version.rsplit(".", 1)[0]


@pytest.mark.parametrize("version", kubernetes.KUBERNETES_VERSIONS)
def test_kubernetes_validate_cli_passes_every_rendered_file(version: str, tmp_path: Path) -> None:
    """The command line users run, on the files as written: every resource passes, none is
    skipped for want of a schema (the CLI only warns then)."""
    files = []
    for variant in PUBLISHED:
        path = tmp_path / f"{variant.value}.yaml"
        path.write_text(manifests.render(image_of(variant), variant)[f"{variant}/{KUBERNETES}"])
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(lines) == 4 * len(PUBLISHED)
    assert all(line.startswith("INFO ") and " passed " in line for line in lines), lines


def test_strict_kubernetes_validation_rejects_unknown_and_mistyped_fields() -> None:
    deployment = one(rendered(Variant.cpu)[KUBERNETES], "Deployment")
    version = kubernetes.KUBERNETES_VERSIONS[0]
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "forty"
    for broken in (unknown, mistyped):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


# ----- KServe -------------------------------------------------------------------------------


@cache
def _definitions(version: str) -> dict[str, Any]:
    folder = f"kubernetes-json-schema/v{version}-local-strict/_definitions.json"
    ref = importlib.resources.files("kubernetes_validate").joinpath(folder)
    definitions: dict[str, Any] = json.loads(ref.read_text())
    return definitions


def _core_validator(version: str, definition: str) -> jsonschema.Draft202012Validator:
    """A validator for one definition of Kubernetes' strict schemas (ObjectMeta, Container)."""
    resource = referencing.Resource.from_contents(_definitions(version))
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        DEFINITIONS_URI, resource
    )
    schema = {"$ref": f"{DEFINITIONS_URI}#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _crd_validator(plural: str) -> jsonschema.Draft202012Validator:
    _, schema = crds.load(plural)
    return jsonschema.Draft202012Validator(crds.strict(schema))


def _kserve_errors(doc: dict[str, Any], kind: str | None = None) -> list[str]:
    """Every schema violation of a KServe resource (as `kind`, default its own)."""
    kind = kind or doc["kind"]
    plural = KSERVE_KINDS[kind]
    source, _ = crds.load(plural)
    doc = {**doc, "kind": kind}
    errors = (
        [] if doc["apiVersion"] == source["apiVersion"] else [f"apiVersion {doc['apiVersion']}"]
    )
    errors += [f"{list(e.path)}: {e.message}" for e in _crd_validator(plural).iter_errors(doc)]
    for version in kubernetes.KUBERNETES_VERSIONS:
        meta = _core_validator(version, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        errors += [f"metadata {e.message}" for e in meta.iter_errors(doc["metadata"])]
    return errors


def test_the_vendored_crds_are_the_pinned_release_unaltered() -> None:
    for plural, (kind, version) in crds.CRDS.items():
        source, schema = crds.load(plural)
        assert source["tag"] == kserve.KSERVE_RELEASE
        assert source["repository"] == crds.REPOSITORY
        assert len(source["commit"]) == 40 and len(source["blob"]) == 40
        assert source["path"] == f"config/crd/full/serving.kserve.io_{plural}.yaml"
        assert (source["kind"], source["apiVersion"]) == (kind, f"serving.kserve.io/{version}")
        # $defs is a lossless rewrite of the CRD's schema (descriptions dropped)
        assert crds.digest(crds.expand(schema)) == source["sha256"], plural
        assert crds.compress(crds.expand(schema)) == schema, plural
    readme = (crds.FOLDER / "README.md").read_text()
    assert kserve.KSERVE_RELEASE in readme
    assert all(crds.load(p)[0]["commit"] in readme for p in crds.CRDS)


@pytest.mark.parametrize(("variant", "doc"), _kserve_documents(), ids=_id)
def test_kserve_resources_validate_against_the_crds(variant: Variant, doc: dict[str, Any]) -> None:
    assert doc["kind"] in KSERVE_KINDS
    assert _kserve_errors(doc) == []


@pytest.mark.parametrize("variant", PUBLISHED)
def test_the_runtime_also_validates_as_a_cluster_serving_runtime(variant: Variant) -> None:
    runtime = one(rendered(variant)["kserve/servingruntime.yaml"], "ServingRuntime")
    assert _kserve_errors(runtime, "ClusterServingRuntime") == []


@pytest.mark.parametrize("version", kubernetes.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", PUBLISHED)
def test_runtime_containers_are_valid_kubernetes_containers(version: str, variant: Variant) -> None:
    runtime = one(rendered(variant)["kserve/servingruntime.yaml"], "ServingRuntime")
    validator = _core_validator(version, "io.k8s.api.core.v1.Container")
    for container in containers(runtime):
        assert [e.message for e in validator.iter_errors(container)] == []


def test_crd_validation_rejects_unknown_mistyped_and_out_of_range_fields() -> None:
    docs = rendered(Variant.cpu)
    runtime = one(docs["kserve/servingruntime.yaml"], "ServingRuntime")
    isvc = one(docs["kserve/inferenceservice.yaml"], "InferenceService")
    broken = []
    for path, value in (
        (("spec", "predictor", "model", "storageURI"), "s3://x"),  # a typo'd field
        (("spec", "predictor", "scaleMetric"), "gpu"),  # not in the enum
        (("spec", "predictor", "minReplicas"), "1"),  # a string
        (("metadata", "labelz"), {}),  # ObjectMeta is strict too
    ):
        doc = copy.deepcopy(isvc)
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        broken.append(doc)
    doc = copy.deepcopy(runtime)
    doc["spec"]["supportedModelFormats"][0]["priority"] = 0  # minimum 1
    broken.append(doc)
    doc = copy.deepcopy(runtime)
    doc["spec"]["containers"][0]["securityContext"]["runAsUSer"] = 1
    broken.append(doc)
    for doc in broken:
        assert _kserve_errors(doc), doc
