"""Read the plans the Dagger module builds, without a Dagger engine.

The Dagger SDK is lazy: `dag.container().from_(...).with_exec([...])` only records the chain
of API fields (selections) in the object's `_ctx`; nothing is sent until a leaf value is
awaited (`stdout()`, `publish()`, `contents()`), which calls `Context.execute`. This module
  * reads an object's chain as a list of `Call`s (type, field, arguments), and
  * stands in for the engine (`FakeEngine`): it replaces `Context.execute`, records every
    query the module would have sent, and answers with a stand-in value (a digest derived
    from the address, the command line as "stdout", a real file of the repo, …).
The stand-in answers are test doubles, not results: the tests assert on the recorded plan.

This is the ONLY place that touches SDK internals (`_ctx`, `Context`), which are private and
may change: they are checked against the pinned SDK version below.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from unittest import mock

import dagger
from dagger.client._core import Context
from dagger.client.base import Type

from onnx_serving import registry_api, registry_login
from onnx_serving.build import SHA256SUM_MODELS
from onnx_serving.models import identities_from_sha256sum, models_label
from onnx_serving.registry_api import OCI_INDEX, OCI_MANIFEST, Manifest, digest_of
from onnx_serving.variants import Variant

SDK_VERSION = "0.21.11"
_installed = importlib.metadata.version("dagger-io")
if _installed != SDK_VERSION:
    raise ImportError(
        f"tests/pipeline/plan.py reads dagger-io internals of {SDK_VERSION}, found {_installed}"
    )

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = Variant.cpu.spec.dockerfile
NATIVE_PLATFORM = "linux/amd64"  # what the fake engine says its own platform is


@dataclass(frozen=True)
class Call:
    """One recorded API field: `Directory.dockerBuild(dockerfile=...)`."""

    type_name: str
    name: str
    args: dict[str, Any]


def calls(obj: Type) -> list[Call]:
    """The chain of API calls that produces `obj`, root first."""
    return _calls_of(obj._ctx)  # the one sanctioned access to SDK internals


def _calls_of(ctx: Context) -> list[Call]:
    return [Call(f.type_name, f.name, dict(f.args)) for f in ctx.selections]


def find(chain: list[Call], name: str) -> list[Call]:
    """Every call named `name` (e.g. "withExec") in `chain`, in order."""
    return [c for c in chain if c.name == name]


def only(chain: list[Call], name: str) -> Call:
    """The single call named `name` in `chain` (fails if there are none or several)."""
    found = find(chain, name)
    assert len(found) == 1, f"expected one {name} call, found {len(found)} in {names(chain)}"
    return found[0]


def names(chain: list[Call]) -> list[str]:
    """The field names of a chain: ["host", "directory", "dockerBuild", ...]."""
    return [c.name for c in chain]


def dockerfile_target(build: Call | dict[str, Any]) -> tuple[str, str]:
    """(Dockerfile, target) of a `dockerBuild` call or its arguments; "" for no target."""
    args = build.args if isinstance(build, Call) else build
    return str(args["dockerfile"]), str(args.get("target", ""))


def render(value: Any) -> str:
    """The plan as text, nested objects expanded, secrets opaque as the engine sees them.

    A Secret reaches the engine as an ID in the query that uses it, never as plaintext, so
    it renders as `<Secret>`: if a secret's value shows up in this text, the module copied it
    somewhere (an env var, a label, an argument).
    """
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, dagger.Secret):
        return "<Secret>"
    if isinstance(value, Type):
        return [[c.type_name, c.name, _plain(c.args)] for c in calls(value)]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def stand_in_digest(address: str, images: Any = None) -> str:
    """What the fake engine answers to `publish(address, platformVariants=images)`: like a
    registry's, a digest of what is pushed (the repository and the images' plans), the same
    under every tag."""
    pushed = f"{address.rpartition(':')[0]} {render(images)}"
    return f"{address}@sha256:{hashlib.sha256(pushed.encode()).hexdigest()}"


# What the fake engine answers for an SBOM's contents (a stand-in CycloneDX document).
STAND_IN_SBOM = '{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}'


@dataclass
class FakeRegistry:
    """Registries in memory, for the module's own registry calls (registry_api.Registry) and
    the fake engine's pushes: every REGISTRY/REPOSITORY's manifests by tag and digest, blobs,
    and `steps`, the engine's and the module's writes in order ("publish TAG", "put TAG",
    "sign"; digests and referrer tags left out)."""

    manifests: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)
    steps: list[str] = field(default_factory=list)
    # Tags whose push the registry refuses (the engine's or the module's), and how.
    refused: set[str] = field(default_factory=set)
    refusal: str = "HTTP 403 DENIED: this tag is not pushed now"

    def client(self, host: str, repository: str, *_: Any, **__: Any) -> FakeRepository:
        return FakeRepository(self, host, repository)

    def store(self, repository: str, reference: str, manifest: Manifest) -> None:
        self.manifests[(repository, reference)] = manifest
        self.manifests[(repository, manifest.digest)] = manifest

    def engine_push(self, address: str, images: list[Any]) -> str:
        """What the fake engine's `publish(address, platformVariants=images)` pushes: one
        manifest per image (annotated as the image is), an index of them for two or more,
        stored under the tag; `address@digest`."""
        repository, _, tag = address.rpartition(":")
        self.steps.append(f"publish {tag}")
        if tag in self.refused:  # the engine's error: the address, then progress lines
            raise RuntimeError(f"{address}: {self.refusal}\n#5 pushing layers")
        entries = []
        for n, image in enumerate(images):
            chain = calls(image)
            notes = {c.args["name"]: c.args["value"] for c in find(chain, "withAnnotation")}
            document = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"digest": stand_in_digest(f"{repository}:{n}", image).split("@")[1]},
                "annotations": notes,
            }
            manifest = Manifest(OCI_MANIFEST, json.dumps(document).encode())
            self.store(repository, manifest.digest, manifest)
            platform = _platform_of(chain) or f"unknown/{n}"
            os_name, architecture = platform.split("/")[:2]
            entries.append(
                {
                    **manifest.descriptor(),
                    "annotations": notes,
                    "platform": {"os": os_name, "architecture": architecture},
                }
            )
        if len(entries) == 1:
            root = self.manifests[(repository, entries[0]["digest"])]
        else:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            root = Manifest(OCI_INDEX, json.dumps(index).encode())
        self.store(repository, tag, root)
        return f"{address}@{root.digest}"


def _platform_of(chain: list[Call]) -> str | None:
    for call in chain:
        platform = call.args.get("platform")
        if platform:
            return str(platform)
    return None


@dataclass
class FakeRepository:
    """`registry_api.Registry`'s calls, answered by a FakeRegistry."""

    registry: FakeRegistry
    host: str
    repository: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"

    def get(self, reference: str) -> Manifest | None:
        return self.registry.manifests.get((str(self), reference))

    def put(self, reference: str, manifest: Manifest) -> str:
        if not reference.startswith("sha256"):
            self.registry.steps.append(f"put {reference}")
        if reference in self.registry.refused:
            raise registry_api.RegistryError(
                f"push {self}:{reference} failed: {self.registry.refusal}"
            )
        self.registry.store(str(self), reference, manifest)
        return manifest.digest

    def upload(self, data: bytes) -> str:
        self.registry.blobs.add(digest_of(data))
        return digest_of(data)

    def referrers(self, digest: str) -> None:
        return None  # as the distribution registry: the fallback tag lists them


Answer = Callable[[list[Call]], Any]


@dataclass
class FakeEngine:
    """Records every query a module function would send and answers with stand-ins.

    `answers` maps a leaf field name (e.g. "contents") to a function of the query's chain;
    it overrides the defaults below.
    """

    answers: dict[str, Answer] = field(default_factory=dict)
    queries: list[list[Call]] = field(default_factory=list)
    # The queries that label images with their models (build.models_identity), kept apart:
    # every building function sends them first, and the plans' tests are about the rest.
    identity_queries: list[list[Call]] = field(default_factory=list)
    # The registry login round trips made (host, repository, username, password): the
    # module's process makes them itself (registry_login), so the fake records them.
    logins: list[tuple[str, str, str | None, str | None, str]] = field(default_factory=list)
    # The registry the engine pushes to and the module reads and writes tags in.
    registry: FakeRegistry = field(default_factory=FakeRegistry)

    def leaf_names(self) -> list[str]:
        """The last field of every query sent, in order (e.g. ["stdout", "publish"])."""
        return [q[-1].name for q in self.queries]

    def queries_named(self, name: str) -> list[list[Call]]:
        return [q for q in self.queries if q[-1].name == name]

    def answer(self, chain: list[Call]) -> Any:
        leaf = chain[-1].name
        execs = find(chain, "withExec")
        if leaf == "stdout" and execs and execs[-1].args["args"][-1] == SHA256SUM_MODELS:
            return _models_sha256sum(REPO / "models")
        if leaf in self.answers:
            return self.answers[leaf](chain)
        if leaf == "publish":
            images = chain[-1].args["platformVariants"]
            return self.registry.engine_push(chain[-1].args["address"], images)
        if leaf == "sync" and execs and execs[-1].args["args"][:2] == ["cosign", "verify"]:
            self.registry.steps.append("verify")
        elif leaf == "sync" and any("cosign" in str(c.args.get("args")) for c in execs):
            self.registry.steps.append("sign")
        if leaf == "contents" and chain[-2].args.get("path", "").endswith("sbom.cdx.json"):
            return STAND_IN_SBOM
        if leaf in ("stdout", "combinedOutput"):
            return f"ran: {' '.join(execs[-1].args['args'])}\n" if execs else ""
        if leaf == "plaintext" and chain[0].name == "setSecret":
            return chain[0].args["plaintext"]
        if leaf == "contents":
            return _host_file(chain)
        if leaf == "defaultPlatform":
            return dagger.Platform(NATIVE_PLATFORM)
        if leaf == "sync":
            return "container-id"
        if leaf == "glob":
            return _host_glob(chain)
        if leaf == "tags":
            return _host_git_tags(chain)
        raise AssertionError(f"the fake engine has no answer for {names(chain)}")


def is_models_identity(query: list[Call]) -> bool:
    """A query of build.models_identity: the Dockerfile's base image read, or sha256sum run."""
    execs = find(query, "withExec")
    if execs:
        return bool(execs[-1].args["args"][-1] == SHA256SUM_MODELS)
    return names(query)[-2:] == ["file", "contents"] and query[-2].args["path"] == DOCKERFILE


def repository_models_label() -> str:
    """The models label of the repository's own models/ (what a plan without --models bakes)."""
    return models_label(identities_from_sha256sum(_models_sha256sum(REPO / "models")))


def _models_sha256sum(repository: Path) -> str:
    """What `sha256sum` prints over a model repository (build.models_identity runs it): the
    repository's own models stand for whatever folder the plan mounted."""
    lines = []
    for path in sorted(repository.glob("*/*/model.onnx")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  ./{path.relative_to(repository).as_posix()}")
    return "\n".join(lines) + "\n"


def _host_glob(chain: list[Call]) -> list[str]:
    """`host.directory(root).glob(pattern)`: the real matches on the host, relative."""
    if names(chain) != ["host", "directory", "glob"]:
        raise AssertionError(f"no stand-in glob for {names(chain)}")
    root = Path(str(chain[1].args["path"]))
    pattern = str(chain[-1].args["pattern"])
    # As release.git_tags expects of the engine's glob (doublestar): a trailing `**` matches
    # files at any depth too (pathlib's, in Python 3.11, only folders); folders end with "/".
    matches = {*root.glob(pattern), *(root.glob(f"{pattern}/*") if pattern.endswith("**") else ())}
    return sorted(p.relative_to(root).as_posix() + "/" * p.is_dir() for p in matches)


def _host_git_tags(chain: list[Call]) -> list[str]:
    """`host.directory(checkout).asGit.tags(patterns)`: the checkout's real tags, read with
    git on the host, as the engine answers them: short names ("v1.2.3") of the tag refs that
    match a pattern at their tail, `*` spanning "/" (util/gitutil/glob.go `gitTailMatch`)."""
    if names(chain) != ["host", "directory", "asGit", "tags"]:
        raise AssertionError(f"no stand-in tags for {names(chain)}")
    listed = subprocess.run(
        ["git", "-C", str(chain[1].args["path"]), "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=True,
    )
    patterns = chain[-1].args.get("patterns") or ["*"]
    return [
        ref.removeprefix("refs/tags/")
        for ref in listed.stdout.split()
        if ref.startswith("refs/tags/") and any(fnmatchcase("/" + ref, "*/" + p) for p in patterns)
    ]


def _host_file(chain: list[Call]) -> str:
    """`host.directory(root).file(path).contents()`: the real file from the host."""
    if names(chain) == ["node", "file", "contents"]:  # the engine's source Directory, by ID
        return (REPO / str(chain[1].args["path"])).read_text(encoding="utf-8")
    if names(chain)[:2] != ["host", "directory"] or chain[-2].name != "file":
        raise AssertionError(f"no stand-in contents for {names(chain)}")
    root, relative = str(chain[1].args["path"]), str(chain[-2].args["path"])
    return (Path(root) / relative).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Argument:
    """One argument as the SDK registers it with the engine (its `--help` entry)."""

    doc: str | None
    required: bool
    default_path: str | None
    ignore: list[str] | None


@dataclass(frozen=True)
class FunctionInfo:
    """One function as the SDK registers it: API name, doc, check flag, cache policy, args."""

    doc: str | None
    check: bool
    cache: str | None
    arguments: dict[str, Argument]


def module_functions(cls: type) -> dict[str, FunctionInfo]:
    """What the SDK would register for `cls` (an @object_type): "" is the constructor.

    Resolving the parameters runs the SDK's own validation of annotations and defaults.
    """
    object_type = cls.__dagger_object_type__  # type: ignore[attr-defined]
    functions = {"": object_type.get_constructor(), **object_type.functions}
    info: dict[str, FunctionInfo] = {}
    for api_name, fn in functions.items():
        arguments = {
            p.name: Argument(
                doc=p.doc,
                required=not p.is_nullable and not p.has_default and p.default_path is None,
                default_path=str(p.default_path) if p.default_path is not None else None,
                ignore=p.ignore,
            )
            for p in fn.parameters.values()
        }
        info[api_name] = FunctionInfo(fn.doc, fn.check, fn.cache_policy, arguments)
    return info


@contextmanager
def fake_engine(answers: dict[str, Answer] | None = None) -> Iterator[FakeEngine]:
    """Within this block, awaiting a Dagger value queries `FakeEngine` instead of an engine."""
    engine = FakeEngine(answers=dict(answers or {}))

    async def execute(ctx: Context, return_type: Any = None) -> Any:
        chain = _calls_of(ctx)
        (engine.identity_queries if is_models_identity(chain) else engine.queries).append(chain)
        value = engine.answer(chain)
        return value if return_type is not None else None

    def check_login(
        host: str,
        repository: str,
        user: str | None,
        password: str | None,
        actions: str,
        cadata: str | None,
    ) -> str:
        engine.logins.append((host, repository, user, password, actions))
        return "open"

    with (
        mock.patch.object(Context, "execute", execute),
        mock.patch.object(registry_login, "check_login", check_login),
        mock.patch.object(registry_api, "Registry", engine.registry.client),
    ):
        yield engine
