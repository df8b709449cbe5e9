"""The release order (release.push) for releases planned by release.plan, beyond the plain
`ghcr.io/…:1.2.3` case of test_release_order.py:

- a registry given with a port (127.0.0.1:5000/onnx, as docs/REGISTRY_GUIDE.md's local
  registry) splits its tags as any other: the immutable tag first, then the signature, then
  the floating tags; the port is no part of a tag;
- a release line (v11.22) has no immutable tag of its own: its commit tag is pushed first and
  is the digest signed, before any floating tag moves."""

from __future__ import annotations

import asyncio
from typing import cast

import dagger
from dagger import dag

from onnx_serving import release
from onnx_serving.registry_api import Registry
from onnx_serving.release import PlatformImages, Release
from onnx_serving.variants import Variant

from .plan import FakeEngine, fake_engine

REVISION = "0123456789abcdef0123456789abcdef01234567"
VARIANTS = [Variant.cpu, Variant.gpu]


def planned(tag: str, repository: str) -> Release:
    return asyncio.run(release.plan(tag, False, None, VARIANTS, repository, REVISION, ""))


def images() -> PlatformImages:
    return {
        (v, dagger.Platform(p)): dag.container().from_(f"built/{v.value}:{p}")
        for v in VARIANTS
        for p in v.spec.platforms
    }


def published_with_signing(plan: Release) -> tuple[FakeEngine, dict[str, str]]:
    repository = next(iter(plan.addresses.values()))[0].rpartition(":")[0]
    host, _, path = repository.partition("/")
    with fake_engine() as engine:
        target = release.Target(
            plan,
            cast(Registry, engine.registry.client(host, path)),
            None,
            None,
            dag.container().from_("signer"),
        )
        published = asyncio.run(release.push([target], images(), REVISION))
    return engine, published


def steps(engine: FakeEngine, repository: str) -> list[str]:
    """The address of each push and `sign` for the signing step, in order (an index's
    annotations put right after the engine pushed it count as that push)."""
    found = engine.registry.steps
    return [
        f"{repository}:{step.partition(' ')[2]}" if step != "sign" else step
        for n, step in enumerate(found)
        if not (n and step.startswith("put ") and found[n - 1] == f"publish {step[4:]}")
    ]


def signed(engine: FakeEngine) -> list[str]:
    """The reference each recursive signature names (cosign's last argument)."""
    return [
        c.args["args"][-1]
        for q in engine.queries_named("sync")
        for c in q
        if c.name == "withExec" and "--recursive" in c.args["args"]
    ]


def by_digest(published: str) -> str:
    """`repo:tag@sha256:…` as `repo@sha256:…`, what is signed."""
    name, _, digest = published.partition("@")
    return f"{name.rpartition(':')[0]}@{digest}"


def test_a_registry_with_a_port_gets_the_release_order() -> None:
    repository = "127.0.0.1:5000/onnx"
    plan = planned("v1.2.3", repository)
    assert plan.immutable(Variant.cpu) == [f"{repository}:1.2.3"]
    assert plan.floating(Variant.cpu) == [f"{repository}:{t}" for t in ("1.2", "1", "latest")]
    engine, published = published_with_signing(plan)
    assert steps(engine, repository) == [
        f"{repository}:1.2.3",
        f"{repository}:1.2.3-gpu",
        "sign",
        *(f"{repository}:{t}" for t in ("1.2", "1", "latest", "1.2-gpu", "1-gpu", "latest-gpu")),
    ]
    assert signed(engine) == [
        by_digest(published[f"{repository}:1.2.3"]),
        by_digest(published[f"{repository}:1.2.3-gpu"]),
    ]


def test_a_release_line_signs_its_commit_tag_s_digest_before_its_floating_tags_move() -> None:
    repository = "ghcr.io/acme/onnx"
    engine, published = published_with_signing(planned("v11.22", repository))
    commit = f"{repository}:sha-{REVISION[:7]}"
    assert steps(engine, repository) == [
        commit,
        f"{commit}-gpu",
        "sign",
        *(
            f"{repository}:{t}"
            for t in ("11.22", "11", "latest", "11.22-gpu", "11-gpu", "latest-gpu")
        ),
    ]
    assert signed(engine) == [by_digest(published[commit]), by_digest(published[f"{commit}-gpu"])]
    assert {published[a].split("@")[1] for a in published if "-gpu" not in a} == {
        published[commit].split("@")[1]
    }
