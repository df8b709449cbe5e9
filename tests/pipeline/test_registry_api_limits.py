"""The registry client (registry_api.py) against registries served on 127.0.0.1 that misbehave:
an upload sent to another origin gets no credentials, an answer larger than a manifest may be
or a document that is not a JSON object is one line naming it, and a token realm that does not
answer is one line too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from onnx_serving.registry_api import MAX_MANIFEST_BYTES, Registry, RegistryError

from .test_registry_login import Registry as RegistryHandler


class Hostile(RegistryHandler):
    """A registry with Basic auth whose answers are set by the test (the login test's
    registry's replies and quiet log)."""

    location: ClassVar[str] = ""
    body: ClassVar[bytes] = b"{}"
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _handle(self) -> None:
        authorization = self.headers.get("Authorization")
        type(self).seen.append((self.path, authorization))
        if authorization is None:
            self._reply(401, WWW_Authenticate='Basic realm="test"')
        elif self.command == "HEAD":
            self._reply(404)
        elif self.command == "POST":
            self._reply(202, Location=self.location)
        else:
            self._reply(200, self.body, Content_Type="application/vnd.oci.image.index.v1+json")

    do_GET = do_HEAD = do_POST = do_PUT = _handle


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on 127.0.0.1; its host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hostile() -> Iterator[str]:
    Hostile.seen.clear()
    with serving(Hostile) as address:
        yield address


def test_an_upload_sent_to_another_origin_gets_no_credentials(hostile: str) -> None:
    Hostile.location = "http://127.0.0.2:9/steal"
    registry = Registry(hostile, "acme/onnx", "bot", "s3cret")
    with pytest.raises(RegistryError, match=r"the registry sent it to 'http://127\.0\.0\.2:9/"):
        registry.upload(b"{}")
    assert all("steal" not in path for path, _ in Hostile.seen)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{" + b" " * MAX_MANIFEST_BYTES + b"}", "the answer exceeds"),
        (b"[1, 2]", "is not a JSON object"),
        (b"not json", "is not a JSON object"),
    ],
)
def test_a_document_that_is_no_manifest_is_one_line(
    hostile: str, body: bytes, message: str
) -> None:
    Hostile.body = body
    registry = Registry(hostile, "acme/onnx", "bot", "s3cret")
    with pytest.raises(RegistryError, match=message) as failed:
        found = registry.get("latest")
        assert found is not None
        found.document  # noqa: B018  (reading it is the check)
    assert "\n" not in str(failed.value)


def test_a_token_realm_that_does_not_answer_is_one_line() -> None:
    class Bearer(Hostile):
        def _handle(self) -> None:
            challenge = 'Bearer realm="http://127.0.0.1:9/token",service="x"'
            self._reply(401, WWW_Authenticate=challenge)

        do_GET = _handle

    with serving(Bearer) as address:
        registry = Registry(address, "acme/onnx", "bot", "pw")
        with pytest.raises(RegistryError, match="its token realm does not answer"):
            registry.get("latest")
