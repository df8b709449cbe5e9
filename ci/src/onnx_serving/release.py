"""`publish`, step by step, in the order a release runs: plan the version and addresses,
build every variant for each of its platforms, verify those very images (smoke test and scan
gate), push them under every tag, sign the pushed digests, render their manifests. Nothing is
pushed unless every image passed verification."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
import dagger
from dagger import dag

from . import containers, manifests, scanning, signing
from .build import BuildInputs
from .scanning import SeverityGate
from .tags import edge_tags, git_release_tags, image_tags, parse_release
from .variants import PUBLISHED, Variant

# Every image of a release: one per variant and platform.
PlatformImages = dict[tuple[Variant, dagger.Platform], dagger.Container]


@dataclass(frozen=True)
class Release:
    """What a publish call pushes: the images' version label and each variant's addresses
    (REGISTRY/REPOSITORY:TAG; all of a variant's tags name one digest)."""

    version: str
    addresses: dict[Variant, list[str]]


async def plan(
    tag: str,
    edge: bool,
    git: dagger.Directory | None,
    variants: list[Variant],
    repository: str,
    revision: str,
    version: str,
) -> Release:
    """The version label and the addresses of a release (--tag) or an edge build (--edge);
    `repository` is REGISTRY/REPOSITORY, `revision` and `version` the module's labels."""
    if bool(tag) == edge:
        raise ValueError("give either --tag vX.Y.Z (a release) or --edge (a main build)")
    if edge:
        edge_tags(revision)  # a one-line error before anything runs
        label = version or f"0.0.0-edge.{revision[:7]}"
        tags = {v: edge_tags(revision, v.spec.tag_suffix) for v in variants}
    else:
        label = parse_release(tag).version
        released = await git_tags(git) if git is not None else []
        tags = {v: image_tags(tag, v.spec.tag_suffix, released) for v in variants}
    return Release(label, {v: [f"{repository}:{t}" for t in tags[v]] for v in variants})


async def git_tags(git: dagger.Directory) -> list[str]:
    """The release tag names of a .git directory (packed and loose)."""
    loose = await git.glob("refs/tags/**")
    packed = await git.glob("packed-refs")
    text = await git.file("packed-refs").contents() if packed else ""
    names = [p.removeprefix("refs/tags/") for p in loose if not p.endswith("/")]
    return git_release_tags(text, names)


def build(inputs: BuildInputs, release: Release) -> PlatformImages:
    """Each variant built once for each of its platforms, labelled with the release version."""
    return {
        (v, p): inputs.image(v, p, release.version)
        for v in release.addresses
        for p in (dagger.Platform(name) for name in v.spec.platforms)
    }


async def verify(
    checker: dagger.Container,
    images: PlatformImages,
    judge: SeverityGate,
    native: dagger.Platform,
) -> None:
    """Smoke-test every image (emulated platforms: started and ready) and scan them all at
    the gate, concurrently; raises unless every image passed both."""
    await asyncio.gather(
        *(
            containers.smoke(
                checker, containers.emulatable(image, p) if p != native else image, p != native
            )
            for (_, p), image in images.items()
        ),
        scanning.scan_and_gate(
            checker, {f"{v} image ({p})": image for (v, p), image in images.items()}, judge
        ),
    )


def pulled(
    repository: str,
    tags: list[str],
    host: str,
    username: str | None,
    password: dagger.Secret | None,
) -> dict[str, dagger.Container]:
    """What users pull: every published variant under each floating tag of REGISTRY/REPOSITORY
    (its first platform), by address."""
    images = {}
    for tag in tags:
        for v in PUBLISHED:
            address = f"{repository}:{tag}{v.spec.tag_suffix}"
            puller = dag.container(platform=dagger.Platform(v.spec.platforms[0]))
            if username is not None and password is not None:
                puller = puller.with_registry_auth(host, username, password)
            images[address] = puller.from_(address)
    return images


def publisher(host: str, username: str | None, password: dagger.Secret | None) -> dagger.Container:
    """The container whose `publish` pushes, logged in when credentials are given."""
    if username is not None and password is not None:
        return dag.container().with_registry_auth(host, username, password)
    return dag.container()


async def push(
    pusher: dagger.Container, images: PlatformImages, release: Release
) -> dict[str, str]:
    """Push each variant's verified platform images under all its addresses, concurrently;
    returns address -> `address@sha256:…`."""
    published: dict[str, str] = {}

    async def push_one(address: str, platform_variants: list[dagger.Container]) -> None:
        published[address] = await pusher.publish(address, platform_variants=platform_variants)

    async with anyio.create_task_group() as pushes:
        for v, addresses in release.addresses.items():
            verified = [images[(v, dagger.Platform(p))] for p in v.spec.platforms]
            for address in addresses:
                pushes.start_soon(push_one, address, verified)
    return published


def digests(release: Release, published: dict[str, str]) -> dict[Variant, str]:
    """Each variant's pushed `ref@sha256:…`: its first address stands for all its tags."""
    return {v: published[addresses[0]] for v, addresses in release.addresses.items()}


async def sign(
    signer: dagger.Container,
    checker: dagger.Container,
    images: PlatformImages,
    pushed: dict[Variant, str],
) -> None:
    """Sign each variant's pushed digest, its platforms' SBOMs attached as attestations."""
    for v, reference in pushed.items():
        sboms = [
            scanning.image_sbom(checker, images[(v, dagger.Platform(p))]) for p in v.spec.platforms
        ]
        await signing.sign(signer, reference, sboms)


def manifest_documents(pushed: dict[Variant, str]) -> list[str]:
    """The Kubernetes and KServe manifests of the pushed digests, as YAML documents."""
    rendered = manifests.render_published(pushed.values())
    return [f"---\n# {name}\n{text}" for name, text in rendered.items()]
