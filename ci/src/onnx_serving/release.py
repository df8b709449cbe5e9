"""`publish`, step by step, in the order a release runs: plan the version and addresses,
build every variant for each of its platforms, verify those very images (smoke test and scan
gate), push them under their immutable tags, sign those digests, and only then move the
floating tags to the same digests; render their manifests. Nothing is pushed unless every
image passed verification, and no floating tag moves before every digest is signed: a
failure at any step leaves the floating tags where they were, and a rerun of the same release
finishes it (on the same engine its cache gives the same images, so the same digests; a fresh
engine's build of the same commit may get new ones, see docs/REGISTRY_GUIDE.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dagger
from dagger import dag

from . import containers, manifests, scanning, signing
from .build import BuildInputs
from .scanning import SeverityGate
from .tags import commit_tag, edge_tags, git_release_tags, image_tags, is_floating, parse_release
from .variants import PUBLISHED, Variant

# Every image of a release: one per variant and platform.
PlatformImages = dict[tuple[Variant, dagger.Platform], dagger.Container]

# The images' own title and licence (their labels, dockerfiles/Dockerfile; pyproject.toml).
TITLE = "onnx-serving"
LICENSES = "Apache-2.0"


@dataclass(frozen=True)
class Release:
    """What a publish call pushes: the images' version label and each variant's addresses
    (REGISTRY/REPOSITORY:TAG; all of a variant's tags name one digest)."""

    version: str
    addresses: dict[Variant, list[str]]

    def immutable(self, variant: Variant) -> list[str]:
        """The variant's addresses under tags that name one build for good."""
        return [a for a in self.addresses[variant] if not _floating(a, variant)]

    def floating(self, variant: Variant) -> list[str]:
        """The variant's addresses under tags that move, in the order they are pushed."""
        return [a for a in self.addresses[variant] if _floating(a, variant)]


def _floating(address: str, variant: Variant) -> bool:
    return is_floating(address.rpartition(":")[2], variant.spec.tag_suffix)


class ReleaseError(Exception):
    """A release step that failed, in one line naming the address."""


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
        parsed = parse_release(tag)
        label = parsed.version
        released = await git_tags(git) if git is not None else []
        tags = {v: image_tags(tag, v.spec.tag_suffix, released) for v in variants}
        if parsed.patch is None and not parsed.prerelease:
            # A release line's tags all float: its commit's tag is the digest's fixed name.
            needed = f"release line {tag} (no immutable tag of its own)"
            tags = {
                v: [*t, commit_tag(revision, v.spec.tag_suffix, needed)] for v, t in tags.items()
            }
    return Release(label, {v: [f"{repository}:{t}" for t in tags[v]] for v in variants})


async def git_tags(git: dagger.Directory) -> list[str]:
    """The release tag names of a .git directory (packed and loose)."""
    loose = await git.glob("refs/tags/**")
    packed = await git.glob("packed-refs")
    text = await git.file("packed-refs").contents() if packed else ""
    names = [p.removeprefix("refs/tags/") for p in loose if not p.endswith("/")]
    return git_release_tags(text, names)


def build(inputs: BuildInputs, release: Release) -> PlatformImages:
    """Each variant built once for each of its platforms, labelled with the release version
    and annotated (`manifest_annotations`): what is verified is what is pushed."""
    images = {}
    for v in release.addresses:
        notes = manifest_annotations(inputs, v, release.version)
        for p in (dagger.Platform(name) for name in v.spec.platforms):
            image = inputs.image(v, p, release.version)
            for name, value in notes.items():
                image = image.with_annotation(name, value)
            images[(v, p)] = image
    return images


def manifest_annotations(inputs: BuildInputs, variant: Variant, version: str) -> dict[str, str]:
    """The OCI annotations of each pushed manifest (and its entry in the index): what the
    image is, from which commit, with which models, readable from the registry without
    pulling the image; empty values are left out. The same inputs give the same annotations,
    so a rerun of a release pushes the same digests."""
    metadata = inputs.metadata
    values = {
        "org.opencontainers.image.title": TITLE,
        "org.opencontainers.image.description": variant.spec.description,
        "org.opencontainers.image.source": metadata.source_url,
        "org.opencontainers.image.revision": metadata.revision,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": LICENSES,
        "org.opencontainers.image.created": metadata.created,
        "io.onnx-serving.models": metadata.models,
    }
    return {name: value for name, value in values.items() if value}


async def verify(
    checker: dagger.Container,
    images: PlatformImages,
    judge: SeverityGate,
    native: dagger.Platform,
    models_label: str,
) -> None:
    """Smoke-test every image, emulated platforms too (an inference of each model, and the
    server holding `models_label`), and scan them all at the gate, concurrently; raises
    unless every image passed both."""
    await asyncio.gather(
        *(
            containers.smoke(
                checker, containers.emulatable(image, p) if p != native else image, models_label
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
    pusher: dagger.Container,
    images: PlatformImages,
    release: Release,
    signer: dagger.Container | None = None,
    checker: dagger.Container | None = None,
) -> dict[str, str]:
    """Push the verified images in a fixed order: every variant's immutable tags, then (with
    `signer` and `checker`) sign those digests, then every variant's floating tags, each
    checked to name the same digest. Returns address -> `address@sha256:…`; raises a
    ReleaseError on the first refused push or digest mismatch, with nothing after it pushed.
    """
    published: dict[str, str] = {}
    digest: dict[Variant, str] = {}
    for floating in (False, True):
        if floating and signer is not None and checker is not None:
            await sign(signer, checker, images, digests(release, published))
        for v in release.addresses:
            verified = [images[(v, dagger.Platform(p))] for p in v.spec.platforms]
            for address in release.floating(v) if floating else release.immutable(v):
                reference = await _push_one(pusher, address, verified)
                got = reference.rpartition("@")[2]
                if digest.setdefault(v, got) != got:
                    raise ReleaseError(
                        f"push {address}: the registry answered {got}, not {digest[v]} of "
                        "the immutable tag; no further tag pushed"
                    )
                published[address] = reference
    return published


async def _push_one(pusher: dagger.Container, address: str, images: list[dagger.Container]) -> str:
    try:
        return await pusher.publish(address, platform_variants=images)
    except Exception as failed:  # whatever refused it, this push failed: say which one
        # The engine's message may span lines (its progress output) and repeat the address.
        lines = str(failed).strip().splitlines() or [type(failed).__name__]
        reason = lines[0].removeprefix(f"{address}: ")
        raise ReleaseError(f"push {address} failed: {reason}") from failed


def digests(release: Release, published: dict[str, str]) -> dict[Variant, str]:
    """Each variant's pushed `ref@sha256:…` under its first immutable tag."""
    return {v: published[release.immutable(v)[0]] for v in release.addresses}


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
