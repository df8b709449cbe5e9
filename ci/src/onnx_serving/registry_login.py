"""The login round trip `publish` and `scan-published` make before anything is built.

The Docker Registry HTTP API v2 way: `GET /v2/` answers 200 (open) or 401 with a challenge;
a Basic challenge is answered on /v2/ itself, a Bearer challenge at its realm, asking for a
token with push and pull on the repository. So a missing or refused login, or a registry
that does not answer, is one line within seconds instead of a failed push after every build.
Stdlib only (it runs in the module's process); loopback registries are plain HTTP, as Docker
treats them.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

TIMEOUT_S = 10.0
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def api_root(host: str) -> str:
    """The registry's API root: https, or http for a loopback registry."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    scheme = "http" if name in _LOOPBACK_HOSTS else "https"
    return f"{scheme}://{host}/v2/"


def _get(url: str, authorization: str | None, timeout: float) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization or ""})
    if authorization is None:
        request.remove_header("Authorization")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read(65536)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def check_login(
    host: str,
    repository: str,
    username: str | None,
    password: str | None,
    timeout: float = TIMEOUT_S,
) -> str:
    """How the registry let us in ("open" or "login accepted"), or a one-line ValueError."""
    root = api_root(host)
    try:
        status, headers, _ = _get(root, None, timeout)
        if status == 200:
            return "open"
        if status != 401:
            raise ValueError(f"registry {host} answered HTTP {status} at {root}: not a registry")
        if not username or password is None:
            raise ValueError(f"registry {host} needs a login: give --username and --password")
        scheme, _, params = headers.get("WWW-Authenticate", "").partition(" ")
        credentials = _basic(username, password)
        if scheme.lower() == "basic":
            status, _, _ = _get(root, credentials, timeout)
        elif scheme.lower() == "bearer":
            status = _token_status(
                dict(_CHALLENGE_PARAM.findall(params)), repository, credentials, timeout
            )
        else:
            raise ValueError(f"registry {host} asks for an unknown login scheme {scheme!r}")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(f"registry {host} does not answer at {root}: {reason}") from None
    if status != 200:
        raise ValueError(
            f"registry {host} refused the login of {username!r} to push {repository} "
            f"(HTTP {status}): check --username and --password"
        )
    return "login accepted"


def _token_status(
    challenge: dict[str, str], repository: str, credentials: str, timeout: float
) -> int:
    """Ask the Bearer challenge's realm for a push token; 200 only with a token in hand."""
    realm = challenge.get("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise ValueError(f"registry login challenge has no usable realm: {realm!r}")
    query = {"scope": f"repository:{repository}:push,pull"}
    if "service" in challenge:
        query["service"] = challenge["service"]
    status, _, body = _get(f"{realm}?{urllib.parse.urlencode(query)}", credentials, timeout)
    if status != 200:
        return status
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    return 200 if answer.get("token") or answer.get("access_token") else 401
