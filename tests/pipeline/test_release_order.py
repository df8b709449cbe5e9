"""The order of a release (release.push): every variant's immutable tags first, then the
signatures of those digests, and only then the floating tags, each checked to name the same
digest. A refused push, a failed signature or a digest mismatch stops the release with a
one-line error naming the address, and no floating tag is pushed after it.

The fake engine answers each push with a digest of the pushed images (tests/pipeline/plan.py),
as a registry does; the tests below make it refuse or answer another digest where needed.
The images are annotated (OCI annotations on their manifests) when built, before they are
verified, from the same values as their labels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import dagger
import pytest
from dagger import dag

from onnx_serving import release
from onnx_serving.build import BuildInputs
from onnx_serving.images import ImageMetadata
from onnx_serving.release import PlatformImages, Release, ReleaseError
from onnx_serving.tags import is_floating
from onnx_serving.variants import Variant

from .plan import Call, FakeEngine, calls, fake_engine, find, only, stand_in_digest

REPO = "ghcr.io/acme/onnx"
REVISION = "0123456789abcdef0123456789abcdef01234567"
VARIANTS = (Variant.cpu, Variant.gpu)


def _release(*tags: str) -> Release:
    """A release of both variants under `tags`, each with the variant's suffix."""
    return Release(
        "11.22.33",
        {v: [f"{REPO}:{t}{v.spec.tag_suffix}" for t in tags] for v in VARIANTS},
    )


def _images() -> PlatformImages:
    return {
        (v, dagger.Platform(p)): dag.container().from_(f"built/{v.value}:{p}")
        for v in VARIANTS
        for p in v.spec.platforms
    }


def _run(
    plan: Release, signing: bool = False, **answers: Callable[[list[Call]], Any]
) -> tuple[FakeEngine, dict[str, str] | BaseException]:
    """(the engine's record, what release.push returned or raised) of one release."""
    signer = dag.container().from_("signer") if signing else None
    checker = dag.container().from_("checker")
    with fake_engine(answers) as engine:
        try:
            result: dict[str, str] | BaseException = asyncio.run(
                release.push(dag.container(), _images(), plan, signer, checker)
            )
        except Exception as failed:  # the test asserts on it
            result = failed
    return engine, result


def _steps(engine: FakeEngine) -> list[str]:
    """What was done, in order: the tag of each push, `sign` for each signature."""
    return [
        q[-1].args["address"].rpartition(":")[2] if q[-1].name == "publish" else "sign"
        for q in engine.queries
        if q[-1].name in ("publish", "sync")
    ]


def test_immutable_tags_are_pushed_and_signed_before_any_floating_tag_moves() -> None:
    engine, published = _run(_release("11.22.33", "11.22", "11", "latest"), signing=True)
    assert _steps(engine) == [
        *("11.22.33", "11.22.33-gpu"),
        *("sign", "sign"),
        *("11.22", "11", "latest", "11.22-gpu", "11-gpu", "latest-gpu"),
    ]
    assert isinstance(published, dict)
    for v in VARIANTS:  # every tag of a variant names the digest that was signed
        digests = {
            published[f"{REPO}:{t}{v.spec.tag_suffix}"].split("@")[1]
            for t in ("11.22.33", "latest")
        }
        assert len(digests) == 1


def test_signatures_name_the_immutable_tags_digests() -> None:
    engine, published = _run(_release("11.22.33", "latest"), signing=True)
    assert isinstance(published, dict)
    signed = [
        " ".join(c.args["args"])
        for q in engine.queries_named("sync")
        for c in q
        if c.name == "withExec" and "sign" in c.args["args"]
    ]
    assert [s.split()[-1] for s in signed] == [
        published[f"{REPO}:11.22.33"],
        published[f"{REPO}:11.22.33-gpu"],
    ]


def test_an_edge_build_pushes_its_commit_tag_before_edge() -> None:
    engine, _ = _run(_release("edge", f"sha-{REVISION[:7]}"))
    assert _steps(engine) == ["sha-0123456", "sha-0123456-gpu", "edge", "edge-gpu"]


def _refusing(refused: str) -> Callable[[list[Call]], str]:
    def publish(chain: list[Call]) -> str:
        address = str(chain[-1].args["address"])
        if address == f"{REPO}:{refused}":
            # The engine's error: the address again, then lines of progress output.
            raise RuntimeError(f"{address}: PUT manifests failed: HTTP 403\n#5 pushing layers")
        return stand_in_digest(address, chain[-1].args["platformVariants"])

    return publish


@pytest.mark.parametrize(
    ("refused", "pushed"),
    [
        ("11.22.33-gpu", ["11.22.33"]),  # before signing: nothing floats, nothing is signed
        ("11", ["11.22.33", "11.22.33-gpu", "sign", "sign", "11.22"]),  # mid-way: stops there
    ],
)
def test_a_refused_push_is_one_line_naming_it_and_stops_the_release(
    refused: str, pushed: list[str]
) -> None:
    engine, failed = _run(
        _release("11.22.33", "11.22", "11", "latest"), signing=True, publish=_refusing(refused)
    )
    assert isinstance(failed, ReleaseError)
    assert str(failed) == f"push {REPO}:{refused} failed: PUT manifests failed: HTTP 403"
    assert _steps(engine) == [*pushed, refused]  # nothing after the refused push


def test_a_failed_signature_moves_no_floating_tag() -> None:
    def sync(chain: list[Call]) -> str:
        raise RuntimeError("cosign: signing failed")

    engine, failed = _run(_release("11.22.33", "latest"), signing=True, sync=sync)
    assert isinstance(failed, RuntimeError) and "cosign" in str(failed)
    assert _steps(engine) == ["11.22.33", "11.22.33-gpu", "sign"]


def test_a_floating_tag_answered_with_another_digest_stops_the_release() -> None:
    other = "sha256:" + "e" * 64

    def publish(chain: list[Call]) -> str:
        address = str(chain[-1].args["address"])
        if address == f"{REPO}:11.22":
            return f"{address}@{other}"
        return stand_in_digest(address, chain[-1].args["platformVariants"])

    engine, failed = _run(_release("11.22.33", "11.22", "latest"), publish=publish)
    assert isinstance(failed, ReleaseError)
    assert str(failed).startswith(f"push {REPO}:11.22: the registry answered {other}, not sha256:")
    assert "\n" not in str(failed)
    assert _steps(engine) == ["11.22.33", "11.22.33-gpu", "11.22"]  # latest never moved


def test_a_rerun_pushes_the_same_digests() -> None:
    plan = _release("11.22.33", "11.22", "11", "latest")
    _, first = _run(plan, publish=_refusing("11"))
    _, rerun = _run(plan)
    assert isinstance(first, ReleaseError) and isinstance(rerun, dict)
    digest = rerun[f"{REPO}:11.22.33"].split("@")[1]
    assert {line.split("@")[1] for a, line in rerun.items() if "-gpu" not in a} == {digest}


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
