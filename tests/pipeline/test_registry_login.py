"""The login round trip `publish` and `scan-published` make before any build
(registry_login.py), against registries served on 127.0.0.1: an open one, one behind a
Bearer token realm (as ghcr.io, with opaque tokens and anonymous pulls), one whose realm
hands out JWTs that narrow the scope (as Docker Hub), one with Basic auth, one that
redirects, and none at all."""

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

from onnx_serving import registry_login
from onnx_serving.registry_login import UNREACHED, api_root, check_login

GOOD = "Basic " + base64.b64encode(b"bot:right-token").decode()


def jwt(access: list[dict[str, object]]) -> str:
    """An unsigned JWT with an `access` claim (the checks read it, never verify it)."""
    claims = base64.urlsafe_b64encode(json.dumps({"access": access}).encode()).decode()
    return f"eyJhbGciOiJub25lIn0.{claims.rstrip('=')}.c2ln"


class Registry(BaseHTTPRequestHandler):
    """`GET /v2/` and a token realm at `/token`, as the distribution spec describes."""

    scheme = "bearer"  # "open", "basic", "bearer", "jwt" or "redirect"
    token_requests: ClassVar[list[dict[str, list[str]]]] = []
    redirected: ClassVar[list[str | None]] = []

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
        authorization = self.headers.get("Authorization")
        if url.path == "/v2/":
            if self.scheme == "redirect":
                self._reply(301, Location=f"http://{self.headers['Host']}/elsewhere/")
            elif self.scheme == "open" or (self.scheme == "basic" and authorization == GOOD):
                self._reply(200)
            elif self.scheme == "basic":
                self._reply(401, WWW_Authenticate='Basic realm="registry"')
            else:
                realm = f"http://{self.headers['Host']}/token"
                challenge = f'Bearer realm="{realm}",service="test-registry"'
                self._reply(401, WWW_Authenticate=challenge)
        elif url.path == "/elsewhere/":
            type(self).redirected.append(authorization)
            self._reply(200)
        elif url.path == "/token":
            query = parse_qs(url.query)
            type(self).token_requests.append(query)
            self._token(authorization, query["scope"][0])
        else:
            self._reply(404)

    def _token(self, authorization: str | None, scope: str) -> None:
        if self.scheme == "jwt":  # any login gets a token, narrowed to what it may do
            _, repository, _ = scope.split(":")
            actions = ["pull", "push"] if authorization == GOOD else ["pull"]
            token = jwt([{"type": "repository", "name": repository, "actions": actions}])
            self._reply(200, json.dumps({"token": token}).encode())
        elif authorization == GOOD or (authorization is None and scope.endswith(":pull")):
            self._reply(200, json.dumps({"token": "opaque-t0k3n"}).encode())
        else:
            self._reply(401)


TOKEN_REQUESTS: list[dict[str, list[str]]] = []  # what the running registry's realm was asked
REDIRECTED: list[str | None] = []  # the Authorization headers that reached the redirect target


@pytest.fixture
def registry(request: pytest.FixtureRequest) -> Iterator[str]:
    TOKEN_REQUESTS.clear()
    REDIRECTED.clear()
    handler = type(
        "Handler",
        (Registry,),
        {"scheme": request.param, "token_requests": TOKEN_REQUESTS, "redirected": REDIRECTED},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_loopback_registries_are_plain_http_and_others_https() -> None:
    assert api_root("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
    assert api_root("localhost:5000") == "http://localhost:5000/v2/"
    assert api_root("[::1]:5000") == "http://[::1]:5000/v2/"
    assert api_root("ghcr.io") == "https://ghcr.io/v2/"
    assert api_root("localhost.example:443") == "https://localhost.example:443/v2/"


def test_docker_hub_is_asked_where_its_api_is() -> None:
    assert api_root("docker.io") == "https://registry-1.docker.io/v2/"
    assert api_root("index.docker.io") == "https://registry-1.docker.io/v2/"


@pytest.mark.parametrize("registry", ["open"], indirect=True)
def test_an_open_registry_needs_no_login(registry: str) -> None:
    assert check_login(registry, "acme/onnx", None, None) == "open"


@pytest.mark.parametrize("registry", ["bearer"], indirect=True)
def test_a_token_realm_grants_a_push_token_for_the_repository(registry: str) -> None:
    assert check_login(registry, "acme/onnx", "bot", "right-token") == "login accepted"
    [asked] = TOKEN_REQUESTS
    assert asked == {"scope": ["repository:acme/onnx:push,pull"], "service": ["test-registry"]}


@pytest.mark.parametrize("registry", ["bearer"], indirect=True)
def test_a_public_image_is_scanned_with_an_anonymous_pull_token(registry: str) -> None:
    assert check_login(registry, "acme/onnx", None, None, actions="pull") == "anonymous pull"
    [asked] = TOKEN_REQUESTS
    assert asked["scope"] == ["repository:acme/onnx:pull"]


@pytest.mark.parametrize("registry", ["bearer", "jwt"], indirect=True)
def test_pushing_without_credentials_needs_a_login(registry: str) -> None:
    with pytest.raises(ValueError, match=rf"^registry {registry} (needs a login|accepted an)"):
        check_login(registry, "acme/onnx", None, None, actions="push,pull")


@pytest.mark.parametrize("registry", ["jwt"], indirect=True)
def test_a_token_narrowed_to_pull_is_no_push_login(registry: str) -> None:
    """Docker Hub's realm answers 200 to any valid login, with the scope narrowed to what the
    account may do: a read-only token is refused before the build, not at the push."""
    assert check_login(registry, "acme/onnx", "bot", "right-token") == "login accepted"
    with pytest.raises(ValueError) as error:
        check_login(registry, "acme/onnx", "reader", "read-only-token")
    assert str(error.value) == (
        f"registry {registry} accepted the login of 'reader' but grants no push on acme/onnx: "
        "check the credentials' permissions"
    )


@pytest.mark.parametrize("registry", ["bearer", "basic"], indirect=True)
def test_wrong_credentials_are_one_line_naming_the_user_and_repository(registry: str) -> None:
    with pytest.raises(ValueError) as error:
        check_login(registry, "acme/onnx", "bot", "wrong-token")
    message = str(error.value)
    assert message == (
        f"registry {registry} refused the login of 'bot' for acme/onnx (HTTP 401): "
        "check --username and --password"
    )
    assert "wrong-token" not in message


@pytest.mark.parametrize("registry", ["basic"], indirect=True)
def test_basic_auth_accepts_the_right_credentials(registry: str) -> None:
    assert check_login(registry, "acme/onnx", "bot", "right-token") == "login accepted"


@pytest.mark.parametrize("registry", ["bearer", "basic"], indirect=True)
def test_a_registry_that_wants_a_login_without_credentials_says_so(registry: str) -> None:
    with pytest.raises(ValueError, match=r"needs a login"):
        check_login(registry, "acme/onnx", None, None)


@pytest.mark.parametrize("registry", ["redirect"], indirect=True)
def test_credentials_never_follow_a_redirect(registry: str) -> None:
    with pytest.raises(ValueError, match=rf"^registry {registry} answered HTTP 301"):
        check_login(registry, "acme/onnx", "bot", "right-token")
    assert REDIRECTED == []  # not even the anonymous probe went there


def test_a_token_realm_in_plain_http_is_refused_for_a_remote_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Credentials to a realm the registry names go over https only (loopback excepted)."""
    challenge = {"realm": "http://tokens.example/token", "service": "x"}
    with pytest.raises(ValueError, match=r"token realm that is not https: 'http://tokens"):
        registry_login.bearer_token(
            registry_login.opener(None), "ghcr.io", challenge, "acme/onnx", "pull", GOOD, 3
        )


def test_a_remote_registry_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(registry_login, "api_root", lambda host: f"http://127.0.0.1:{port}/v2/")
    with pytest.raises(ValueError) as error:
        check_login("registry.example", "acme/onnx", "bot", "token", timeout=3)
    assert str(error.value).startswith(
        f"registry registry.example does not answer at http://127.0.0.1:{port}/v2/: "
    )


def test_a_loopback_registry_out_of_reach_is_left_to_the_push() -> None:
    """Under an engine in a container the module's loopback is its own: a loopback
    registry it cannot reach may still be the engine's."""
    assert check_login(f"127.0.0.1:{free_port()}", "acme/onnx", "bot", "t", timeout=3) == (
        UNREACHED
    )
