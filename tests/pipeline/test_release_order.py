"""The order of a release (release.push): every variant's immutable tags first (an index
annotated), then each platform image's SBOM and provenance attached, then the signatures,
and only then the floating tags, each put as the very bytes of its immutable tag's manifest.
A refused push, a failed signature or a digest mismatch stops the release with a one-line
error naming the address, and no floating tag is pushed after it; an immutable tag that
already names this revision's build is kept (a rerun finishes the release), one of another
revision stops it.

The fake engine pushes into a registry in memory (tests/pipeline/plan.py: FakeRegistry),
which the module's own registry calls read and write; the tests make it refuse where needed.
The images are annotated (OCI annotations on their manifests) when built, before they are
verified, from the same values as their labels.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import dagger
import pytest
from dagger import dag

from onnx_serving import attachments, provenance, release
from onnx_serving.build import BuildInputs
from onnx_serving.images import ImageMetadata
from onnx_serving.registry_api import Manifest, Registry
from onnx_serving.release import PlatformImages, Release, ReleaseError
from onnx_serving.tags import is_floating
from onnx_serving.variants import Variant

from .plan import FakeEngine, FakeRegistry, calls, fake_engine, find, only

REPO = "ghcr.io/acme/onnx"
REVISION = "0123456789abcdef0123456789abcdef01234567"
VARIANTS = (Variant.cpu, Variant.gpu)
BASE = "python:3.11-slim-bookworm@sha256:" + "b" * 64
METADATA = ImageMetadata(
    revision=REVISION,
    created="2026-01-02T03:04:05Z",
    source_url="https://github.com/acme/onnx",
    models="mlp/1@sha256:" + "a" * 64,
)


def _release(*tags: str) -> Release:
    """A release of both variants under `tags`, each with the variant's suffix."""
    return Release(
        "11.22.33",
        {v: [f"{REPO}:{t}{v.spec.tag_suffix}" for t in tags] for v in VARIANTS},
    )


def _images(revision: str = REVISION, version: str = "11.22.33") -> PlatformImages:
    """Each variant's image per platform, annotated with its revision and version as
    release.build does."""
    return {
        (v, dagger.Platform(p)): dag.container(platform=dagger.Platform(p))
        .from_(f"built/{v.value}:{p}")
        .with_annotation(release.REVISION, revision)
        .with_annotation(release.VERSION, version)
        for v in VARIANTS
        for p in v.spec.platforms
    }


def _run(
    plan: Release,
    signing: bool = False,
    registry: FakeRegistry | None = None,
    revision: str = REVISION,
    sync: Any = None,
    hosts: tuple[str, ...] = ("ghcr.io",),
) -> tuple[FakeEngine, dict[str, str] | BaseException]:
    """(the engine's record, what release.push returned or raised) of one release to each
    of `hosts`, into `registry` (a fresh one by default: a rerun passes the first run's)."""
    checker = dag.container().from_("checker")
    run = provenance.BuildRun(METADATA, plan.version, "")
    evidence = release.Evidence(checker, run, dict.fromkeys(VARIANTS, BASE))
    with fake_engine({"sync": sync} if sync else None) as engine:
        if registry is not None:
            engine.registry = registry
        targets = [
            release.Target(
                _moved(plan, host),
                cast(Registry, engine.registry.client(host, "acme/onnx")),
                None,
                None,
                dag.container().from_("signer") if signing else None,
            )
            for host in hosts
        ]
        try:
            result: dict[str, str] | BaseException = asyncio.run(
                release.push(targets, _images(revision, plan.version), revision, evidence)
            )
        except Exception as failed:  # the test asserts on it
            result = failed
    return engine, result


def _moved(plan: Release, host: str) -> Release:
    """`plan` with its addresses in the registry `host`."""
    return Release(
        plan.version,
        {
            v: [a.replace("ghcr.io/", f"{host}/", 1) for a in a_s]
            for v, a_s in plan.addresses.items()
        },
    )


def _steps(engine: FakeEngine) -> list[str]:
    """What was done, in order: each tag pushed (by the engine or the module; an index's
    annotations put right after the engine pushed it count as that push), `sign` for the
    signing step."""
    steps = engine.registry.steps
    return [
        step.partition(" ")[2] if step != "sign" else step
        for n, step in enumerate(steps)
        if not (n and step.startswith("put ") and steps[n - 1] == f"publish {step[4:]}")
    ]


def _manifest(engine: FakeEngine, reference: str) -> Manifest:
    return engine.registry.manifests[(REPO, reference)]


def test_immutable_tags_are_pushed_and_signed_before_any_floating_tag_moves() -> None:
    engine, published = _run(_release("11.22.33", "11.22", "11", "latest"), signing=True)
    assert _steps(engine) == [
        *("11.22.33", "11.22.33-gpu"),
        "sign",
        *("11.22", "11", "latest", "11.22-gpu", "11-gpu", "latest-gpu"),
    ]
    assert isinstance(published, dict)
    for v in VARIANTS:  # every tag of a variant names the digest that was signed
        tags = [f"{t}{v.spec.tag_suffix}" for t in ("11.22.33", "11.22", "11", "latest")]
        digests = {published[f"{REPO}:{t}"].split("@")[1] for t in tags}
        assert digests == {_manifest(engine, tags[0]).digest}
        assert {_manifest(engine, t).body for t in tags} == {_manifest(engine, tags[0]).body}


def test_an_index_gets_the_annotations_of_its_images() -> None:
    engine, _ = _run(_release("11.22.33"))
    index = _manifest(engine, "11.22.33")
    assert index.is_index
    assert index.document["annotations"][release.REVISION] == REVISION
    single = _manifest(engine, "11.22.33-gpu")  # one platform: a manifest, annotated already
    assert not single.is_index and single.document["annotations"][release.REVISION] == REVISION


def _platform_digests(engine: FakeEngine, tag: str) -> list[str]:
    root = _manifest(engine, tag)
    return [e["digest"] for e in root.document["manifests"]] if root.is_index else [root.digest]


def test_each_platform_image_gets_its_own_sbom_and_provenance() -> None:
    engine, _ = _run(_release("11.22.33"))
    for tag, platforms in (("11.22.33", 2), ("11.22.33-gpu", 1)):
        digests = _platform_digests(engine, tag)
        assert len(digests) == platforms
        for digest in digests:
            listed = _manifest(engine, attachments.fallback_tag(digest)).document["manifests"]
            kinds = {entry["artifactType"]: entry["digest"] for entry in listed}
            assert set(kinds) == {attachments.CYCLONEDX, attachments.IN_TOTO}
            for artifact_type, artifact in kinds.items():
                document = _manifest(engine, artifact).document
                assert document["subject"]["digest"] == digest  # this platform's image
                assert document["artifactType"] == artifact_type
            statement = _manifest(engine, kinds[attachments.IN_TOTO]).document["layers"][0]
            assert statement["mediaType"] == attachments.IN_TOTO
    # SBOMs are made from the pushed images, pulled by digest, one per platform image.
    sboms = [q for q in engine.queries if q[-1].name == "contents" and find(q, "withMountedFile")]
    pulled = [
        only(calls(only(q, "withMountedFile").args["source"]), "from").args["address"]
        for q in sboms
        if q[-2].args.get("path", "").endswith("sbom.cdx.json")
    ]
    expected = [d for t in ("11.22.33", "11.22.33-gpu") for d in _platform_digests(engine, t)]
    assert pulled == [f"{REPO}@{d}" for d in expected]


def test_signatures_name_the_pushed_digests_and_attest_each_platform_s_provenance() -> None:
    engine, published = _run(_release("11.22.33", "latest"), signing=True)
    assert isinstance(published, dict)
    [signing] = [q for q in engine.queries if q[-1].name == "sync"]
    execs = [c.args["args"] for c in find(signing, "withExec")]
    recursive = [a[-1] for a in execs if a[:4] == ["cosign", "sign", "--yes", "--recursive"]]
    roots = [published[f"{REPO}:{t}"].split("@")[1] for t in ("11.22.33", "11.22.33-gpu")]
    assert recursive == [f"{REPO}@{digest}" for digest in roots]
    artifacts = [a[-1] for a in execs if a[:3] == ["cosign", "sign", "--yes"] and len(a) == 4]
    assert len(artifacts) == 6  # an SBOM and a provenance per platform image
    platform_images = [
        *_platform_digests(engine, "11.22.33"),
        *_platform_digests(engine, "11.22.33-gpu"),
    ]
    for reference in artifacts:
        subject = _manifest(engine, reference.split("@")[1]).document["subject"]["digest"]
        assert subject in platform_images
    attested = [a for a in execs if a[:2] == ["cosign", "attest"]]
    assert [a[-1] for a in attested] == [f"{REPO}@{d}" for d in platform_images]
    assert all(a[2:5] == ["--yes", "--type", "slsaprovenance1"] for a in attested)
    predicates = {c.args["path"]: c.args["contents"] for c in find(signing, "withNewFile")}
    for arguments in attested:
        predicate = json.loads(predicates[arguments[-2]])
        assert predicate["buildDefinition"]["buildType"] == provenance.BUILD_TYPE


def test_an_edge_build_pushes_its_commit_tag_before_edge() -> None:
    engine, _ = _run(_release(f"sha-{REVISION[:7]}", "edge"))
    assert _steps(engine) == ["sha-0123456", "sha-0123456-gpu", "edge", "edge-gpu"]


@pytest.mark.parametrize(
    ("refused", "pushed"),
    [
        ("11.22.33-gpu", ["11.22.33"]),  # before signing: nothing floats, nothing is signed
        ("11", ["11.22.33", "11.22.33-gpu", "sign", "11.22"]),  # mid-way: stops there
    ],
)
def test_a_refused_push_is_one_line_naming_it_and_stops_the_release(
    refused: str, pushed: list[str]
) -> None:
    registry = FakeRegistry(refused={refused})
    engine, failed = _run(_release("11.22.33", "11.22", "11", "latest"), True, registry)
    assert isinstance(failed, ReleaseError)
    assert (
        str(failed) == f"push {REPO}:{refused} failed: HTTP 403 DENIED: this tag is not pushed now"
    )
    assert _steps(engine) == [*pushed, refused]  # nothing after the refused push


def test_a_failed_signature_moves_no_floating_tag() -> None:
    def sync(chain: Any) -> str:
        raise RuntimeError("cosign: signing failed")

    engine, failed = _run(_release("11.22.33", "latest"), signing=True, sync=sync)
    assert isinstance(failed, RuntimeError) and "cosign" in str(failed)
    assert _steps(engine) == ["11.22.33", "11.22.33-gpu"]


def test_a_rerun_keeps_the_immutable_tag_s_build_and_finishes_the_release() -> None:
    plan = _release("11.22.33", "11.22", "11", "latest")
    registry = FakeRegistry(refused={"11"})
    first_engine, first = _run(plan, registry=registry)
    assert isinstance(first, ReleaseError)
    pushed = _manifest(first_engine, "11.22.33").digest
    registry.refused.clear()
    registry.steps.clear()
    # A fresh engine builds other bytes (here: other images), yet the tag's build is kept.
    _, rerun = _run(plan, registry=registry)
    assert isinstance(rerun, dict)
    # Nothing pushed again, nor re-annotated: the immutable tag keeps its bytes.
    assert not [step for step in registry.steps if step.endswith(" 11.22.33")]
    assert {rerun[f"{REPO}:{t}"].split("@")[1] for t in ("11.22.33", "11", "latest")} == {pushed}


def test_an_immutable_tag_of_another_revision_stops_the_release() -> None:
    registry = FakeRegistry()
    _run(_release("11.22.33"), registry=registry)
    registry.steps.clear()
    other = "f" * 40
    _, failed = _run(_release("11.22.33", "latest"), registry=registry, revision=other)
    assert isinstance(failed, ReleaseError)
    assert str(failed).startswith(f"push {REPO}:11.22.33: the tag already names sha256:")
    assert f"a build of revision {REVISION} version 11.22.33 (this release: {other}" in str(failed)
    assert registry.steps == []  # nothing pushed, no floating tag moved


def test_a_build_of_another_version_is_not_kept() -> None:
    # The edge build of the same commit already names sha-0123456 (version 0.0.0-edge…): a
    # release line of that commit must not move 11.22, 11 and latest onto it.
    registry = FakeRegistry()
    edge = Release("0.0.0-edge.0123456", _release("sha-0123456", "edge").addresses)
    _run(edge, registry=registry)
    registry.steps.clear()
    _, failed = _run(_release("sha-0123456", "11.22", "latest"), registry=registry)
    assert isinstance(failed, ReleaseError)
    assert "version 0.0.0-edge.0123456 (this release: " in str(failed)
    assert registry.steps == []


def test_a_conflict_in_any_variant_stops_the_release_before_the_first_push() -> None:
    registry = FakeRegistry()
    _run(_release("11.22.33"), registry=registry, revision="f" * 40)
    del registry.manifests[(REPO, "11.22.33")]  # only the gpu tag is left, of another build
    registry.steps.clear()
    _, failed = _run(_release("11.22.33", "latest"), registry=registry)
    assert isinstance(failed, ReleaseError)
    assert str(failed).startswith(f"push {REPO}:11.22.33-gpu: the tag already names")
    assert registry.steps == []  # cpu was not pushed either


def test_a_signed_rerun_keeps_only_a_build_its_workflows_signed_and_signs_nothing_again() -> None:
    plan = _release("11.22.33", "latest")
    registry = FakeRegistry(refused={"latest"})
    _run(plan, signing=True, registry=registry)
    first = registry.manifests[(REPO, "11.22.33")].digest
    listed = registry.manifests[(REPO, attachments.fallback_tag(_platform_digests_of(registry)))]
    registry.refused.clear()
    registry.steps.clear()
    engine, rerun = _run(plan, signing=True, registry=registry)
    assert isinstance(rerun, dict) and rerun[f"{REPO}:latest"].split("@")[1] == first
    # Each kept build's signature is checked; nothing is built, attached or signed again.
    assert registry.steps == ["verify", "verify", "put latest", "put latest-gpu"]
    verified = [
        c.args["args"]
        for q in engine.queries_named("sync")
        for c in find(q, "withExec")
        if c.args["args"][:2] == ["cosign", "verify"]
    ]
    assert verified[0][-1] == f"{REPO}@{first}"
    assert "--certificate-identity-regexp" in verified[0]
    assert verified[0][verified[0].index("--certificate-identity-regexp") + 1] == (
        r"^https://github\.com/acme/onnx/\.github/workflows/"
    )
    assert (
        registry.manifests[(REPO, attachments.fallback_tag(_platform_digests_of(registry)))]
        == listed
    )


def _platform_digests_of(registry: FakeRegistry) -> str:
    """The first platform image's digest under the cpu index of 11.22.33."""
    index = registry.manifests[(REPO, "11.22.33")].document
    return str(index["manifests"][0]["digest"])


def test_a_kept_build_without_this_repository_s_signature_is_refused() -> None:
    def unsigned(chain: Any) -> str:
        if find(chain, "withExec")[-1].args["args"][:2] == ["cosign", "verify"]:
            raise RuntimeError("cosign: no matching signatures")
        return "container-id"

    registry = FakeRegistry()
    _run(_release("11.22.33"), registry=registry)  # pushed without signing, e.g. by hand
    registry.steps.clear()
    _, failed = _run(_release("11.22.33", "latest"), True, registry, sync=unsigned)
    assert isinstance(failed, ReleaseError)
    assert "which no workflow of https://github.com/acme/onnx signed" in str(failed)
    assert registry.steps == []  # nothing signed, no floating tag moved


def test_every_registry_gets_its_immutable_tags_before_any_floating_tag_moves() -> None:
    engine, published = _run(_release("11.22.33", "latest"), hosts=("ghcr.io", "quay.io"))
    assert isinstance(published, dict)
    steps = engine.registry.steps
    floating = [n for n, step in enumerate(steps) if step.startswith("put latest")]
    immutable = [n for n, step in enumerate(steps) if "11.22.33" in step]
    assert len(floating) == 4 and len(immutable) == 6  # per registry: 2 pushes, 1 annotation
    assert max(immutable) < min(floating)
    assert published["quay.io/acme/onnx:latest"].startswith("quay.io/acme/onnx:latest@sha256:")


def test_a_release_line_gets_its_commit_as_the_immutable_tag() -> None:
    plan = asyncio.run(release.plan("v11.22", False, None, [Variant.cpu], REPO, REVISION, ""))
    assert plan.immutable(Variant.cpu) == [f"{REPO}:sha-0123456"]
    assert plan.floating(Variant.cpu) == [f"{REPO}:{t}" for t in ("11.22", "11", "latest")]
    with pytest.raises(ValueError, match=r"^invalid revision '': release line v11.22 .*--revision"):
        asyncio.run(release.plan("v11.22", False, None, [Variant.cpu], REPO, "", ""))


@pytest.mark.parametrize(
    ("tag", "suffix", "floating"),
    [
        ("latest", "", True),
        ("edge-gpu", "-gpu", True),
        ("1", "", True),
        ("1.2-gpu", "-gpu", True),
        ("1.2.3", "", False),
        ("1.3.0-rc.1", "", False),
        ("sha-0123456-gpu", "-gpu", False),
        ("latest-gpu", "", False),  # another variant's tag is not this variant's floating tag
        ("01", "", False),
    ],
)
def test_floating_tags(tag: str, suffix: str, floating: bool) -> None:
    assert is_floating(tag, suffix) is floating


class _Inputs:
    """What release.build reads of BuildInputs: the labels' values and one image per call."""

    metadata = ImageMetadata(
        revision=REVISION,
        created="2026-01-02T03:04:05Z",
        source_url="https://github.com/acme/onnx",
        models="mlp/1@sha256:" + "a" * 64,
    )

    def image(self, variant: Variant, platform: dagger.Platform, version: str) -> dagger.Container:
        return dag.container().from_(f"built/{variant.value}:{platform}:{version}")


def test_every_image_is_annotated_with_what_it_is_before_it_is_verified() -> None:
    images = release.build(cast(BuildInputs, _Inputs()), _release("11.22.33"))
    assert len(images) == 3  # cpu amd64 + arm64, gpu amd64
    for (variant, _), image in images.items():
        chain = calls(image)
        assert only(chain, "from").args["address"].endswith(":11.22.33")  # the release version
        annotated = {c.args["name"]: c.args["value"] for c in find(chain, "withAnnotation")}
        assert annotated == {
            "org.opencontainers.image.title": "onnx-serving",
            "org.opencontainers.image.description": variant.spec.description,
            "org.opencontainers.image.source": "https://github.com/acme/onnx",
            "org.opencontainers.image.revision": REVISION,
            "org.opencontainers.image.version": "11.22.33",
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
            "io.onnx-serving.models": "mlp/1@sha256:" + "a" * 64,
        }


def test_an_empty_value_is_no_annotation() -> None:
    inputs = _Inputs()
    inputs.metadata = ImageMetadata()
    notes = release.manifest_annotations(cast(BuildInputs, inputs), Variant.cpu, "0.0.0-dev")
    assert set(notes) == {
        f"org.opencontainers.image.{key}" for key in ("title", "description", "version", "licenses")
    }
