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
import sys
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
# The annotations that say which commit and release an image was built for.
REVISION = "org.opencontainers.image.revision"
VERSION = "org.opencontainers.image.version"


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
        VERSION: version,
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
            puller = logged_in(host, username, password, dagger.Platform(v.spec.platforms[0]))
            images[address] = puller.from_(address)
    return images


def logged_in(
    host: str,
    username: str | None,
    password: dagger.Secret | None,
    platform: dagger.Platform | None = None,
) -> dagger.Container:
    """An empty container logged in to `host` when credentials are given: what pushes, and
    what pulls a pushed image back."""
    container = dag.container(platform=platform)
    if username is not None and password is not None:
        return container.with_registry_auth(host, username, password)
    return container


@dataclass(frozen=True)
class Target:
    """One registry a release goes to: its addresses, its client and login, and (with OIDC
    secrets) the container that signs there."""

    release: Release
    registry: Registry
    username: str | None
    password: dagger.Secret | None
    signer: dagger.Container | None = None

    def container(self, platform: dagger.Platform | None = None) -> dagger.Container:
        return logged_in(self.registry.host, self.username, self.password, platform)


@dataclass(frozen=True)
class Evidence:
    """What `push` attaches to every platform image it pushes (attachments.py): its SBOM,
    made by `checker` from the image pulled back by digest, and its provenance
    (provenance.py)."""

    checker: dagger.Container
    run: provenance.BuildRun
    base_images: dict[Variant, str]


async def push(
    targets: list[Target],
    images: PlatformImages,
    revision: str,
    evidence: Evidence | None = None,
) -> dict[str, str]:
    """Push the verified images to every target in a fixed order. First every immutable tag
    of every target is read: one that already names this release's build (same revision
    and version; with signing, signed by this repository's workflows) is kept, so a rerun
    finishes a release instead of pushing another build; any other stops the release before
    anything is pushed. Then, target by target, the immutable tags of what is not kept (an
    index annotated as its images are), each new platform image's SBOM and provenance
    attached (`evidence`), and (with a signer) the new digests and documents signed. Only
    then, once every immutable tag is read back unchanged, every target's floating tags are
    put as the very bytes of its immutable tag's manifest. Returns address ->
    `address@sha256:…`; raises a ReleaseError on the first failure, nothing after it pushed.
    """
    kept = [
        {v: await _kept(t, v, revision, evidence) for v in t.release.addresses} for t in targets
    ]
    roots: list[dict[Variant, Manifest]] = []
    for target, found in zip(targets, kept, strict=True):
        roots.append(await _push_immutable(target, images, found, evidence))
    published: dict[str, str] = {}
    for target, pushed in zip(targets, roots, strict=True):
        for v, root in pushed.items():
            for address in target.release.immutable(v):
                if await _get(target.registry, _tag(address)) != root:
                    raise ReleaseError(
                        f"push {address}: the tag no longer names {root.digest} (another run "
                        "pushed it meanwhile); no floating tag moved"
                    )
                published[address] = f"{address}@{root.digest}"
    for target, pushed in zip(targets, roots, strict=True):
        for v in target.release.addresses:
            for address in target.release.floating(v):
                await _put(target.registry, address, pushed[v])
                published[address] = f"{address}@{pushed[v].digest}"
    return published


async def _kept(
    target: Target, variant: Variant, revision: str, evidence: Evidence | None
) -> Manifest | None:
    """The build the variant's immutable tags already name, if this release may keep it;
    None when no immutable tag exists yet. Raises a ReleaseError for any other build."""
    found: dict[str, Manifest] = {}
    for address in target.release.immutable(variant):
        manifest = await _get(target.registry, _tag(address))
        if manifest is not None:
            found[address] = manifest
    if not found:
        return None
    address, manifest = next(iter(found.items()))
    _same_build(address, manifest, revision, target.release.version)
    if any(m.digest != manifest.digest for m in found.values()):
        raise ReleaseError(
            f"push {address}: the release's immutable tags name different builds: "
            f"{', '.join(f'{a}@{m.digest}' for a, m in found.items())}"
        )
    if target.signer is not None:
        # Never sign what this run did not build: a kept build must carry the signature of
        # this repository's workflows already (made by the run that pushed it).
        identity = evidence.run.metadata.source_url if evidence is not None else ""
        try:
            await signing.verify(target.signer, f"{target.registry}@{manifest.digest}", identity)
        except Exception as unsigned:  # whatever the reason, it is not kept
            raise ReleaseError(
                f"push {address}: the tag names {manifest.digest}, which no workflow of "
                f"{identity or 'this repository'} signed; an immutable tag is pushed once: "
                "release a new version"
            ) from unsigned
    return manifest


def _same_build(address: str, found: Manifest, revision: str, version: str) -> None:
    """An immutable tag names one build for good: keep it only for the same release."""
    document = found.document
    notes = document.get("annotations") or {}
    if not notes and found.is_index and document.get("manifests"):
        notes = document["manifests"][0].get("annotations") or {}
    theirs = (notes.get(REVISION, ""), notes.get(VERSION, ""))
    if not revision or theirs != (revision, version):
        raise ReleaseError(
            f"push {address}: the tag already names {found.digest}, a build of revision "
            f"{theirs[0] or 'unknown'} version {theirs[1] or 'unknown'} (this release: "
            f"{revision or 'no --revision'} version {version}); an immutable tag is pushed "
            "once: rerun that release from its own commit, or release a new version"
        )


async def _push_immutable(
    target: Target,
    images: PlatformImages,
    kept: dict[Variant, Manifest | None],
    evidence: Evidence | None,
) -> dict[Variant, Manifest]:
    """Each variant's root manifest under its immutable tags: the kept one as it is, or
    the engine's push of the verified images, annotated (`_annotated`); the new ones get
    their documents attached and, with a signer, signatures."""
    roots: dict[Variant, Manifest] = {}
    new: dict[Variant, Manifest] = {}
    for v, root in kept.items():
        if root is not None:  # kept: only the immutable tags a cut-off run did not push
            roots[v] = root
            for address in target.release.immutable(v):
                if await _get(target.registry, _tag(address)) is None:
                    await _put(target.registry, address, root)
            continue
        first, *others = target.release.immutable(v)
        verified = [images[(v, dagger.Platform(p))] for p in v.spec.platforms]
        reference = await _push_one(target.container(), first, verified)
        pushed = await _get(target.registry, reference.rpartition("@")[2])
        if pushed is None:
            raise ReleaseError(f"push {first}: the registry has no {reference}")
        roots[v] = new[v] = await _annotate(target.registry, first, pushed)
        for address in others:
            await _put(target.registry, address, roots[v])
    platforms = {v: await _platform_manifests(target.registry, root) for v, root in new.items()}
    attached: list[str] = []
    if evidence is not None:
        for v, manifests in platforms.items():
            attached += await _attach(target, evidence, v, manifests)
    if target.signer is not None and new:
        await signing.sign(
            target.signer,
            [f"{target.registry}@{root.digest}" for root in new.values()],
            [f"{target.registry}@{digest}" for digest in attached],
            _provenances(target, evidence, platforms) if evidence else {},
        )
    return roots


async def _annotate(registry: Registry, address: str, pushed: Manifest) -> Manifest:
    """`pushed` with its images' annotations on the index too, put under `address` again;
    where the registry refuses to move the tag (immutable tags), the engine's index as is."""
    root = _annotated(pushed)
    if root.body == pushed.body:
        return pushed
    try:
        await _put(registry, address, root)
    except ReleaseError as refused:
        print(f"{refused}: the index keeps the annotations of its images only", file=sys.stderr)
        return pushed
    return root


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
    target: Target, evidence: Evidence, variant: Variant, manifests: dict[str, Manifest]
) -> list[str]:
    """Attach each new platform image's SBOM and provenance; the artifacts' digests."""
    registry = target.registry
    digests = []
    for platform, manifest in manifests.items():
        name = platform or variant.spec.platforms[0]
        pulled = target.container(dagger.Platform(name)).from_(f"{registry}@{manifest.digest}")
        sbom = await scanning.image_sbom(evidence.checker, pulled).contents()
        statement = provenance.statement(
            str(registry), manifest.digest, _predicate(evidence, target.release, variant, name)
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
    target: Target, evidence: Evidence, platforms: dict[Variant, dict[str, Manifest]]
) -> dict[str, str]:
    """Each new platform image's reference -> its provenance predicate (JSON), to attest."""
    return {
        f"{target.registry}@{manifest.digest}": json.dumps(
            _predicate(evidence, target.release, v, platform or v.spec.platforms[0])
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
    except ValueError as failed:  # a document the registry answered that is not JSON
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
