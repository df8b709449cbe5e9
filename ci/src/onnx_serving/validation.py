"""Checks of every user-supplied pipeline argument, run BEFORE anything is built or pushed.

Each check returns the normalized value or raises a one-line ValueError that names the bad
value and what is allowed. Pure Python, no dagger import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .variants import PUBLISHED, Variant

# Hostname labels with an optional port: ghcr.io, docker.io, localhost:5000, 127.0.0.1:5000,
# 123456789012.dkr.ecr.eu-west-1.amazonaws.com. No scheme, no path, no credentials.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?")
# The path grammar of the distribution reference spec: lowercase components joined by "/".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_MAX_NAME_LENGTH = 255  # registry + "/" + repository, per the reference spec


def _choices(values: Sequence[str]) -> str:
    return ", ".join(values)


def variant(value: Variant | str) -> Variant:
    """The variant `value` names (the engine passes an enum member; direct callers a name)."""
    if isinstance(value, Variant):
        return value
    try:
        return Variant(value)
    except ValueError:
        raise ValueError(
            f"invalid variant {value!r}: choose one of {_choices([v.value for v in Variant])}"
        ) from None


def published_variants(values: Sequence[Variant | str] | None) -> list[Variant]:
    """Distinct published variants in the given order (default: every published one)."""
    if values is None:
        return list(PUBLISHED)
    if not values:
        names = _choices([v.value for v in PUBLISHED])
        raise ValueError(f"no variant given: choose from {names}")
    chosen = [variant(v) for v in dict.fromkeys(values)]
    for v in chosen:
        if not v.spec.published:
            raise ValueError(
                f"variant {v.value!r} is not published: choose from "
                f"{_choices([p.value for p in PUBLISHED])}"
            )
    return chosen


def platform(chosen: Variant, name: str | None) -> str | None:
    """The build platform: `name` when this variant ships for it.

    Without `name`: the only platform of a single-platform variant (GPU: linux/amd64), else
    None, which lets the engine build for its own platform (no emulation on an arm64 laptop).
    """
    platforms = chosen.spec.platforms
    if name is None or name == "":
        return platforms[0] if len(platforms) == 1 else None
    if name not in platforms:
        raise ValueError(
            f"invalid platform {name!r} for variant {chosen.value!r}: "
            f"choose one of {_choices(platforms)}"
        )
    return name


def registry(host: str) -> str:
    """A registry host[:port] such as ghcr.io or localhost:5000."""
    if not _REGISTRY.fullmatch(host):
        raise ValueError(
            f"invalid registry {host!r}: expected a host[:port] such as ghcr.io or "
            "localhost:5000 (no scheme, path or credentials)"
        )
    port = host.rpartition(":")[2] if ":" in host else None
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"invalid registry {host!r}: port {port} is out of range")
    return host


def registries(hosts: list[str] | None) -> list[str]:
    """The registries one publish pushes to, each a host[:port] once; ghcr.io by default."""
    chosen = [registry(host) for host in hosts or ["ghcr.io"]]
    repeated = sorted({h for h in chosen if chosen.count(h) > 1})
    if repeated:
        raise ValueError(f"registry {repeated[0]!r} is given twice: name each registry once")
    return chosen


def login_source(has_username: bool, has_docker_config: bool, registries: int) -> None:
    """One source of logins: --username/--password (one registry) or --docker-config."""
    if has_username and has_docker_config:
        raise ValueError(
            "give --username/--password or --docker-config, not both: the logins come from one"
        )
    if has_username and registries > 1:
        raise ValueError(
            "--username/--password log in to one registry: for several, give --docker-config "
            "(a Docker config file with a login for each)"
        )


def repository(path: str, registry_host: str) -> str:
    """A repository path such as my-org/onnx-serving, lowercased.

    Image names are lowercase; GitHub's `github.repository` keeps the owner's capitals, so
    (like docker/metadata-action) the path is lowercased rather than rejected.
    """
    if not _REPOSITORY.fullmatch(path.lower()):
        raise ValueError(
            f"invalid repository {path!r}: expected path components such as "
            "my-org/onnx-serving (letters, digits, '.', '_', '-', joined by '/')"
        )
    if len(registry_host) + 1 + len(path) > _MAX_NAME_LENGTH:
        raise ValueError(
            f"invalid repository {path!r}: the image name exceeds {_MAX_NAME_LENGTH} characters"
        )
    return path.lower()


def credentials(username: str | None, has_password: bool) -> None:
    """Username and password come together, or not at all (anonymous or pre-configured)."""
    if username is not None and username.strip() == "":
        raise ValueError("invalid username '': give a registry user name or omit --username")
    if has_password and username is None:
        raise ValueError("--password was given without --username: registries need both")
    if username is not None and not has_password:
        raise ValueError(
            f"--username {username!r} was given without --password: pass the token as a "
            "secret, e.g. --password env://REGISTRY_TOKEN"
        )


def positive(name: str, value: int) -> int:
    """A count that must be at least 1 (requests, concurrency, batch size)."""
    if value < 1:
        raise ValueError(f"invalid {name} {value!r}: must be at least 1")
    return value


def signing(has_request_url: bool, has_request_token: bool, has_password: bool) -> bool:
    """Whether to sign: both OIDC secrets (keyless), plus registry credentials for cosign."""
    if has_request_url != has_request_token:
        raise ValueError(
            "give --oidc-request-url and --oidc-request-token together (keyless signing), "
            "or neither"
        )
    if has_request_url and not has_password:
        raise ValueError(
            "signing pushes signatures to the registry: give --username and --password too"
        )
    return has_request_url


_FLOATING = re.compile(r"latest|edge|[0-9]+(\.[0-9]+){0,2}")


def floating_tag(tag: str) -> str:
    """A tag users pull (latest, edge, 1, 1.2, 1.2.3), without a variant suffix."""
    if not _FLOATING.fullmatch(tag):
        raise ValueError(
            f"invalid tag {tag!r}: give latest, edge or a version such as 1.2 (each variant's "
            "suffix is added)"
        )
    return tag


# ----- the deploy manifests' arguments (manifests.py) --------------------------------------

_DIGEST_REFERENCE = re.compile(r"(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_STORAGE_URI = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/][^\s]*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class PinnedImage:
    """An image reference pinned by digest: what every manifest runs."""

    name: str  # registry/repository
    digest: str  # sha256:<64 hex>

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}"


def pinned_image(reference: str) -> PinnedImage:
    """`REGISTRY/REPOSITORY[:TAG]@sha256:<64 hex>`; a tag (as `publish` prints) is dropped."""

    def bad(reason: str) -> ValueError:
        return ValueError(
            f"invalid image {reference!r}: {reason}; expected REGISTRY/REPOSITORY@sha256:<64 "
            "hex digits>, e.g. ghcr.io/my-org/onnx-serving@sha256:…"
        )

    match = _DIGEST_REFERENCE.fullmatch(reference)
    if match is None:
        raise bad("not pinned by a sha256 digest")
    name = match["name"]
    head, _, last = name.rpartition("/")
    if ":" in last:  # a tag; a registry port can only sit before the first "/"
        last, _, tag = last.partition(":")
        if not _TAG.fullmatch(tag):
            raise bad(f"bad tag {tag!r}")
        name = f"{head}/{last}" if head else last
    host, slash, path = name.partition("/")
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        raise bad("no registry host (such as ghcr.io) before the repository")
    try:
        host = registry(host)
        path = repository(path, host)
    except ValueError as exc:
        raise bad(str(exc)) from None
    return PinnedImage(f"{host}/{path}", match["digest"])


def storage_uri(uri: str) -> str:
    """A KServe storage URI such as s3://bucket/path, gs://…, pvc://claim/path, https://…"""
    if not _STORAGE_URI.fullmatch(uri):
        raise ValueError(
            f"invalid storage URI {uri!r}: expected SCHEME://LOCATION such as "
            "s3://my-bucket/model-repository or pvc://models/repository"
        )
    return uri


def namespace(name: str) -> str:
    """A Kubernetes namespace name (an RFC 1123 label)."""
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(
            f"invalid namespace {name!r}: expected at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def deployable_variant(value: Variant | str) -> Variant:
    """A variant with manifests: the published ones (each sized in the variant table)."""
    try:
        chosen: Variant | None = variant(value)
    except ValueError:
        chosen = None
    if chosen is None or chosen not in PUBLISHED:
        names = _choices([v.value for v in PUBLISHED])
        raise ValueError(f"invalid variant {str(value)!r}: manifests exist for {names}")
    return chosen
