"""The login round trip `publish` and `scan-published` make before any build
(registry_login.py), against registries served on 127.0.0.1: an open one, one behind a
Bearer token realm (as ghcr.io and Docker Hub), one with Basic auth, and none at all."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from onnx_serving.registry_login import api_root, check_login

GOOD = "Basic " + base64.b64encode(b"bot:right-token").decode()


class Registry(BaseHTTPRequestHandler):
    """`GET /v2/` and a token realm at `/token`, as the distribution spec describes."""

    scheme = "bearer"  # "open", "basic" or "bearer"
    token_requests: ClassVar[list[dict[str, list[str]]]] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _reply(self, status: int, body: bytes = b"{}", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        authorized = self.headers.get("Authorization") == GOOD
        if url.path == "/v2/":
            if self.scheme == "open" or (self.scheme == "basic" and authorized):
                self._reply(200)
            elif self.scheme == "basic":
                self._reply(401, WWW_Authenticate='Basic realm="registry"')
            else:
                realm = f"http://{self.headers['Host']}/token"
                challenge = f'Bearer realm="{realm}",service="test-registry"'
                self._reply(401, WWW_Authenticate=challenge)
        elif url.path == "/token":
            type(self).token_requests.append(parse_qs(url.query))
            if authorized:
                self._reply(200, json.dumps({"token": "t0k3n"}).encode())
            else:
                self._reply(401)
        else:
            self._reply(404)


TOKEN_REQUESTS: list[dict[str, list[str]]] = []  # what the running registry's realm was asked


@pytest.fixture
def registry(request: pytest.FixtureRequest) -> Iterator[str]:
    TOKEN_REQUESTS.clear()
    handler = type(
        "Handler", (Registry,), {"scheme": request.param, "token_requests": TOKEN_REQUESTS}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_registries_are_plain_http_and_others_https() -> None:
    assert api_root("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
    assert api_root("localhost:5000") == "http://localhost:5000/v2/"
    assert api_root("ghcr.io") == "https://ghcr.io/v2/"
    assert api_root("localhost.example:443") == "https://localhost.example:443/v2/"


@pytest.mark.parametrize("registry", ["open"], indirect=True)
def test_an_open_registry_needs_no_login(registry: str) -> None:
    assert check_login(registry, "acme/onnx", None, None) == "open"


@pytest.mark.parametrize("registry", ["bearer"], indirect=True)
def test_a_token_realm_grants_a_push_token_for_the_repository(registry: str) -> None:
    assert check_login(registry, "acme/onnx", "bot", "right-token") == "login accepted"
    [asked] = TOKEN_REQUESTS
    assert asked == {"scope": ["repository:acme/onnx:push,pull"], "service": ["test-registry"]}


@pytest.mark.parametrize("registry", ["bearer", "basic"], indirect=True)
def test_wrong_credentials_are_one_line_naming_the_user_and_repository(registry: str) -> None:
    with pytest.raises(ValueError) as error:
        check_login(registry, "acme/onnx", "bot", "wrong-token")
    message = str(error.value)
    assert message == (
        f"registry {registry} refused the login of 'bot' to push acme/onnx (HTTP 401): "
        "check --username and --password"
    )
    assert "wrong-token" not in message


@pytest.mark.parametrize("registry", ["basic"], indirect=True)
def test_basic_auth_accepts_the_right_credentials(registry: str) -> None:
    assert check_login(registry, "acme/onnx", "bot", "right-token") == "login accepted"


@pytest.mark.parametrize("registry", ["bearer", "basic"], indirect=True)
def test_a_registry_that_wants_a_login_without_credentials_says_so(registry: str) -> None:
    with pytest.raises(ValueError, match=r"needs a login: give --username and --password$"):
        check_login(registry, "acme/onnx", None, None)


def test_a_registry_that_does_not_answer_is_named() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError) as error:
        check_login(f"127.0.0.1:{port}", "acme/onnx", "bot", "token", timeout=3)
    assert str(error.value).startswith(
        f"registry 127.0.0.1:{port} does not answer at http://127.0.0.1:{port}/v2/: "
    )
