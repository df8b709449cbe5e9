"""`publish`, step by step, in the order a release runs: plan the version and addresses,
build every variant for each of its platforms, verify those very images (smoke test and scan
gate), push them under their immutable tags, attach each platform image's SBOM and
provenance, sign, and only then move the floating tags to the same digests; render their
manifests. Nothing is pushed unless every image passed verification, and no floating tag
moves before every digest is attached and signed: a failure at any step leaves the floating
tags where they were, and a rerun of the same release finishes it (an immutable tag that
already names a build of the same revision is kept, whatever a new build's digest would be;
docs/REGISTRY_GUIDE.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import dagger
from dagger import dag

from . import attachments, containers, manifests, provenance, scanning, signing
from .build import BuildInputs
from .registry_api import Manifest, Registry, RegistryError
from .scanning import SeverityGate
from .tags import commit_tag, edge_tags, image_tags, is_floating, parse_release, tag_names
from .variants import PUBLISHED, Variant

T = TypeVar("T")

# Every image of a release: one per variant and platform.
PlatformImages = dict[tuple[Variant, dagger.Platform], dagger.Container]

# The images' own title and licence (their labels, dockerfiles/Dockerfile; pyproject.toml).
TITLE = "onnx-serving"
LICENSES = "Apache-2.0"
# The annotation that says which commit an image was built from.
REVISION = "org.opencontainers.image.revision"


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
    git: dagger.GitRepository | None,
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


async def git_tags(git: dagger.GitRepository) -> list[str]:
    """The repository's release tag names, packed or loose refs alike: releases are tagged v*
    (.github/workflows/release.yml)."""
    # The engine answers short names ("v1.2.3": core/schema/git.go `tags`); tag_names takes
    # full refs too.
    return tag_names(await git.tags(patterns=["refs/tags/v*"]))


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
        REVISION: metadata.revision,
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


@dataclass(frozen=True)
class Evidence:
    """What `push` attaches to every pushed platform image (attachments.py): its SBOM, made
    by `checker` from the image pulled by digest, and its provenance (provenance.py)."""

    checker: dagger.Container
    run: provenance.BuildRun
    base_images: dict[Variant, str]


async def push(
    pusher: dagger.Container,
    registry: Registry,
    images: PlatformImages,
    release: Release,
    revision: str,
    evidence: Evidence | None = None,
    signer: dagger.Container | None = None,
) -> dict[str, str]:
    """Push the verified images in a fixed order: every variant's immutable tags (a tag that
    already names a build of `revision` is kept: a rerun finishes a release rather than
    pushing a new build), an index annotated as its images are; then (with `evidence`)
    each platform image's SBOM and provenance attached; then (with `signer`) the
    signatures; then every variant's floating tags, each put as the very bytes of the
    immutable tag's manifest.
    Returns address -> `address@sha256:…`; raises a ReleaseError on the first refused
    push, with nothing after it pushed."""
    published: dict[str, str] = {}
    roots: dict[Variant, Manifest] = {}
    for v in release.addresses:
        verified = [images[(v, dagger.Platform(p))] for p in v.spec.platforms]
        roots[v] = await _push_immutable(pusher, registry, release, v, verified, revision)
        published.update({a: f"{a}@{roots[v].digest}" for a in release.immutable(v)})
    platforms = {v: await _platform_manifests(registry, root) for v, root in roots.items()}
    attached = []
    if evidence is not None:
        for v, manifests in platforms.items():
            attached += await _attach(registry, evidence, release, v, manifests)
    if signer is not None:
        await signing.sign(
            signer,
            [f"{registry}@{root.digest}" for root in roots.values()],
            [f"{registry}@{digest}" for digest in attached],
            _provenances(registry, evidence, release, platforms) if evidence else {},
        )
    for v in release.addresses:
        for address in release.floating(v):
            await _put(registry, address, roots[v])
            published[address] = f"{address}@{roots[v].digest}"
    return published


async def _push_immutable(
    pusher: dagger.Container,
    registry: Registry,
    release: Release,
    variant: Variant,
    images: list[dagger.Container],
    revision: str,
) -> Manifest:
    """The variant's root manifest under its immutable tags: the one already there for
    `revision`, or the engine's push of `images`, annotated (`_annotated`)."""
    first, *others = release.immutable(variant)
    existing = await _get(registry, _tag(first))
    if existing is not None:
        _same_build(first, existing, revision)
    else:
        reference = await _push_one(pusher, first, images)
        existing = await _get(registry, reference.rpartition("@")[2])
        if existing is None:
            raise ReleaseError(f"push {first}: the registry has no {reference}")
    root = _annotated(existing)
    if root.body != existing.body:
        await _put(registry, first, root)
    for address in others:
        found = await _get(registry, _tag(address))
        if found is not None and found.digest != root.digest:
            _same_build(address, found, revision)
        await _put(registry, address, root)
    return root


def _same_build(address: str, found: Manifest, revision: str) -> None:
    """An immutable tag names one build for good: reuse it only for the same revision."""
    document = found.document
    notes = document.get("annotations") or {}
    if not notes and found.is_index and document.get("manifests"):
        notes = document["manifests"][0].get("annotations") or {}
    theirs = notes.get(REVISION, "")
    if not revision or theirs != revision:
        raise ReleaseError(
            f"push {address}: the tag already names {found.digest} (revision "
            f"{theirs or 'unknown'}, this one {revision or 'not given'}); an immutable tag is "
            "pushed once: rerun with that --revision to finish its release, or release a "
            "new version"
        )


def _annotated(root: Manifest) -> Manifest:
    """An index with its images' annotations as its own (the engine puts them on each
    manifest and index entry only; GHCR shows a multi-platform image's description and
    source from the index's); an index annotated already, or one image's manifest, as is."""
    document = root.document
    entries = [entry.get("annotations") or {} for entry in document.get("manifests") or []]
    if not root.is_index or "annotations" in document or not entries or entries[0] == {}:
        return root
    if any(notes != entries[0] for notes in entries):
        return root  # images that disagree: no one description of them all
    annotated = {**document, "annotations": entries[0]}
    return Manifest(root.media_type, json.dumps(annotated, indent=2).encode())


async def _platform_manifests(registry: Registry, root: Manifest) -> dict[str, Manifest]:
    """Each platform's image manifest under `root` (an index, or one image's manifest)."""
    if not root.is_index:
        return {"": root}
    found = {}
    for entry in root.document["manifests"]:
        platform = entry.get("platform") or {}
        name = f"{platform.get('os')}/{platform.get('architecture')}"
        if platform.get("variant"):
            name += f"/{platform['variant']}"
        manifest = await _get(registry, entry["digest"])
        if manifest is None:
            raise ReleaseError(f"read {registry}@{entry['digest']}: the registry has none")
        found[name] = manifest
    return found


async def _attach(
    registry: Registry,
    evidence: Evidence,
    release: Release,
    variant: Variant,
    manifests: dict[str, Manifest],
) -> list[str]:
    """Attach each platform image's SBOM and provenance; the attached artifacts' digests."""
    digests = []
    for platform, manifest in manifests.items():
        name = platform or variant.spec.platforms[0]
        pulled = dag.container(platform=dagger.Platform(name)).from_(
            f"{registry}@{manifest.digest}"
        )
        sbom = await scanning.image_sbom(evidence.checker, pulled).contents()
        statement = provenance.statement(
            str(registry), manifest.digest, _predicate(evidence, release, variant, name)
        )
        for document in (
            attachments.Document(attachments.CYCLONEDX, "sbom.cdx.json", sbom.encode()),
            attachments.Document(attachments.IN_TOTO, "provenance.intoto.json", statement),
        ):
            digests.append(
                await _registry_call(
                    f"attach {document.title} to {registry}@{manifest.digest}",
                    attachments.attach,
                    registry,
                    manifest,
                    document,
                )
            )
    return digests


def _predicate(
    evidence: Evidence, release: Release, variant: Variant, platform: str
) -> dict[str, object]:
    tags = [a.rpartition(":")[2] for a in release.addresses[variant]]
    return provenance.predicate(
        evidence.run, variant, platform, tags, evidence.base_images.get(variant, "")
    )


def _provenances(
    registry: Registry,
    evidence: Evidence,
    release: Release,
    platforms: dict[Variant, dict[str, Manifest]],
) -> dict[str, str]:
    """Each platform image's reference -> its provenance predicate (JSON), to attest."""
    return {
        f"{registry}@{manifest.digest}": json.dumps(
            _predicate(evidence, release, v, platform or v.spec.platforms[0])
        )
        for v, manifests in platforms.items()
        for platform, manifest in manifests.items()
    }


def _tag(address: str) -> str:
    return address.rpartition(":")[2]


async def _get(registry: Registry, reference: str) -> Manifest | None:
    return await _registry_call(f"read {registry}:{reference}", registry.get, reference)


async def _put(registry: Registry, address: str, manifest: Manifest) -> None:
    await _registry_call(f"push {address}", registry.put, _tag(address), manifest)


async def _registry_call(what: str, call: Callable[..., T], *args: object) -> T:
    """A blocking registry call off the event loop; its failure a one-line ReleaseError."""
    try:
        return await asyncio.to_thread(call, *args)
    except RegistryError as failed:
        raise ReleaseError(str(failed)) from None
    except ValueError as failed:  # a login the registry refused (registry_login)
        raise ReleaseError(f"{what} failed: {failed}") from None


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


def manifest_documents(pushed: dict[Variant, str]) -> list[str]:
    """The Kubernetes and KServe manifests of the pushed digests, as YAML documents."""
    rendered = manifests.render_published(pushed.values())
    return [f"---\n# {name}\n{text}" for name, text in rendered.items()]
