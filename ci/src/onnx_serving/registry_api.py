"""The registry calls `publish` makes itself, besides the engine's pushes (the Registry HTTP
API v2, as `crane` or `oras` make them): read what a tag names, put those very bytes under
another tag (a floating tag then names exactly the immutable tag's digest), and upload the
small blobs of an attached document.

Stdlib only, in the module's own process, with the login rules of `registry_login` (a Bearer
token for push and pull, Basic where the registry asks for it, https except on loopback,
no redirect followed).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

from .registry_login import (
    UNANSWERED,
    api_root,
    basic_authorization,
    bearer_token,
    challenge,
    opener,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
TIMEOUT_S = 60.0
MAX_MANIFEST_BYTES = 4 << 20  # the registries' own limit for a manifest


class RegistryError(Exception):
    """A registry call that failed, in one line naming what was asked."""


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry stores it: its exact bytes decide its digest."""

    media_type: str
    body: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.body)

    @property
    def document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return document

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self) -> dict[str, Any]:
        """What an index entry or an OCI `subject` says of this manifest."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body)}


class Registry:
    """One repository of one registry, logged in on its first 401."""

    def __init__(
        self,
        host: str,
        repository: str,
        username: str | None = None,
        password: str | None = None,
        cadata: str | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.host = host
        self.repository = repository
        self._base = f"{api_root(host)}{repository}"
        self._credentials = basic_authorization(username, password)
        self._opener = opener(cadata)
        self._timeout = timeout
        self._authorization: str | None = None

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"

    def get(self, reference: str) -> Manifest | None:
        """The manifest or index a tag or digest names; None when there is none."""
        status, headers, body = self._call("GET", f"manifests/{reference}", {"Accept": ACCEPT})
        if status == 404:
            return None
        self._expect(status, (200,), f"read {self}:{reference}", body)
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        manifest = Manifest(media_type or json.loads(body).get("mediaType", ""), body)
        if reference.startswith("sha256:") and manifest.digest != reference:
            raise RegistryError(f"read {self}@{reference}: the registry answered other bytes")
        return manifest

    def put(self, reference: str, manifest: Manifest) -> str:
        """Store `manifest` under a tag (or its digest); the digest the registry gives it."""
        headers = {"Content-Type": manifest.media_type}
        status, reply, body = self._call("PUT", f"manifests/{reference}", headers, manifest.body)
        self._expect(status, (201,), f"push {self}:{reference}", body)
        answered = reply.get("Docker-Content-Digest") or manifest.digest
        if answered != manifest.digest:
            raise RegistryError(
                f"push {self}:{reference}: the registry answered {answered}, not {manifest.digest}"
            )
        return answered

    def upload(self, data: bytes) -> str:
        """Upload a blob (monolithic: a document of a few MB at most); its digest."""
        digest = digest_of(data)
        status, _, _ = self._call("HEAD", f"blobs/{digest}", {})
        if status == 200:
            return digest
        status, started, body = self._call("POST", "blobs/uploads/", {"Content-Length": "0"}, b"")
        self._expect(status, (202,), f"upload to {self}", body)
        location = urllib.parse.urljoin(self._base + "/", started.get("Location", ""))
        if _origin(location) != _origin(self._base):  # the login goes to this registry only
            raise RegistryError(f"upload to {self}: the registry sent it to {location!r}")
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}{urllib.parse.urlencode({'digest': digest})}"
        status, _, body = self._call("PUT", url, {"Content-Type": "application/octet-stream"}, data)
        self._expect(status, (201,), f"upload {digest} to {self}", body)
        return digest

    def referrers(self, digest: str) -> dict[str, Any] | None:
        """The referrers API's index of what names `digest` as its subject; None where the
        registry does not serve the API (then the `sha256-<hex>` tag lists them)."""
        status, _, body = self._call("GET", f"referrers/{digest}", {"Accept": OCI_INDEX})
        if status != 200:
            return None
        return Manifest(OCI_INDEX, body).document

    def _call(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, Message, bytes]:
        url = path if "://" in path else f"{self._base}/{path}"
        status, reply, answer = self._send(method, url, headers, body)
        if status == 401 and self._login(reply):
            status, reply, answer = self._send(method, url, headers, body)
        return status, reply, answer

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        if self._authorization is not None:
            request.add_header("Authorization", self._authorization)
        try:
            with self._opener.open(request, timeout=self._timeout) as reply:
                answer = reply.read(MAX_MANIFEST_BYTES + 1)
                if len(answer) > MAX_MANIFEST_BYTES:
                    raise RegistryError(
                        f"{method} {url}: the answer exceeds {MAX_MANIFEST_BYTES} bytes"
                    )
                return reply.status, reply.headers, answer
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read(64 << 10)
        except UNANSWERED as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            raise RegistryError(f"{method} {url}: {reason}") from None

    def _login(self, reply: Message) -> bool:
        """Answer a 401's challenge; whether there is a new authorization to retry with."""
        scheme, params = challenge(reply.get("WWW-Authenticate", ""))
        if scheme == "basic":
            fresh = self._credentials
        elif scheme == "bearer":
            token = self._token(params)
            fresh = f"Bearer {token}" if token is not None else None
        else:
            return False
        if fresh is None or fresh == self._authorization:
            return False
        self._authorization = fresh
        return True

    def _token(self, challenge: dict[str, str]) -> str | None:
        try:
            return bearer_token(
                self._opener,
                self.host,
                challenge,
                self.repository,
                "push,pull",
                self._credentials,
                self._timeout,
            )
        except UNANSWERED as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            raise RegistryError(f"{self}: its token realm does not answer: {reason}") from None
        except ValueError as refused:  # a realm that is not https, an answer without a token
            raise RegistryError(str(refused)) from None

    @staticmethod
    def _expect(status: int, wanted: tuple[int, ...], what: str, body: bytes) -> None:
        if status in wanted:
            return
        try:
            errors = json.loads(body).get("errors") or []
            reason = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            reason = ""
        raise RegistryError(f"{what} failed: HTTP {status}" + (f" {reason}" if reason else ""))
