"""The login round trip `publish` and `scan-published` make before anything is built.

The Docker Registry HTTP API v2 way: `GET /v2/` answers 200 (open) or 401 with a challenge;
a Basic challenge is answered on /v2/ itself, a Bearer challenge at its realm, asking for a
token for the repository (`push,pull` to publish, `pull` to scan; anonymously without
credentials, as public images on GHCR and Docker Hub are read). So a missing or refused
login, or a registry that does not answer, is one line within seconds instead of a failed
push after every build.

Stdlib only: it runs in the module's own process. Credentials never follow a redirect (a
3xx is an error here) and go over https only; loopback registries are plain HTTP, as Docker
treats them. A loopback registry the module's process cannot reach (under an engine in a
container, the module has a loopback of its own) is UNREACHED: `scan-published` leaves it
to the pull, `publish` (which reads and moves tags itself) refuses it.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import Any

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 1 << 20  # a token answer is a few KiB
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
# Docker Hub's registry API is not served at the name images use (as containerd maps it).
_API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
# What an unreachable or broken registry raises from urllib.
UNANSWERED = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)
UNREACHED = "not reached from the module's process (a loopback registry): the push will tell"


def is_loopback(host: str) -> bool:
    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    return name in _LOOPBACK_HOSTS


def api_root(host: str) -> str:
    """The registry's API root: https, or http for a loopback registry."""
    scheme = "http" if is_loopback(host) else "https"
    return f"{scheme}://{_API_HOSTS.get(host, host)}/v2/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would carry the Authorization header to any host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener(cadata: str | None) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()
    if cadata:
        context.load_verify_locations(cadata=cadata)
    return urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))


def _get(
    opener: urllib.request.OpenerDirector, url: str, authorization: str | None, timeout: float
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


def basic_authorization(username: str | None, password: str | None) -> str | None:
    """The Basic credentials header of a login; None without one."""
    if not username or password is None:
        return None
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """A WWW-Authenticate header's scheme (lower case) and parameters."""
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


def check_login(
    host: str,
    repository: str,
    username: str | None,
    password: str | None,
    actions: str = "push,pull",
    cadata: str | None = None,
    timeout: float = TIMEOUT_S,
) -> str:
    """How the registry let us in ("open", "anonymous pull", "login accepted" or UNREACHED),
    or a one-line ValueError. `actions` is the token scope needed: "push,pull" or "pull";
    `cadata` a PEM bundle to trust besides the system's (a TLS-intercepting proxy)."""
    root = api_root(host)
    client = opener(cadata)
    wanted = "push" if "push" in actions else "pull"
    try:
        status, headers, _ = _get(client, root, None, timeout)
        if status == 200:
            return "open"
        if status != 401:
            raise ValueError(f"registry {host} answered HTTP {status} at {root}: not a registry")
        scheme, params = challenge(headers.get("WWW-Authenticate", ""))
        credentials = basic_authorization(username, password)
        if scheme == "bearer":
            token = bearer_token(client, host, params, repository, actions, credentials, timeout)
            status = 401 if token is None else 200
            if token is not None and _grants(token, repository, wanted) is False:
                who = f"the login of {username!r}" if credentials else "an anonymous login"
                raise ValueError(
                    f"registry {host} accepted {who} but grants no {wanted} on {repository}: "
                    "check the credentials' permissions"
                )
            if token is not None and credentials is None:
                if wanted == "push":  # no token registry lets anyone push
                    raise ValueError(f"registry {host} needs a login to push: give --username")
                return "anonymous pull"
        elif scheme != "basic":
            raise ValueError(f"registry {host} asks for an unknown login scheme {scheme!r}")
        elif credentials is None:
            status = 401
        else:
            status, _, _ = _get(client, root, credentials, timeout)
    except UNANSWERED as e:
        if is_loopback(host):
            return UNREACHED
        reason = getattr(e, "reason", None) or type(e).__name__
        raise ValueError(f"registry {host} does not answer at {root}: {reason}") from None
    if status != 200 and credentials is None:
        raise ValueError(f"registry {host} needs a login: give --username and --password")
    if status != 200:
        raise ValueError(
            f"registry {host} refused the login of {username!r} for {repository} "
            f"(HTTP {status}): check --username and --password"
        )
    return "login accepted"


def bearer_token(
    opener: urllib.request.OpenerDirector,
    host: str,
    challenge: dict[str, str],
    repository: str,
    actions: str,
    credentials: str | None,
    timeout: float,
) -> str | None:
    """A token for `repository` from the Bearer challenge's realm; None when refused."""
    realm = challenge.get("realm", "")
    scheme = urllib.parse.urlsplit(realm).scheme
    if scheme != "https" and not (scheme == "http" and is_loopback(host)):
        raise ValueError(f"registry {host} names a token realm that is not https: {realm!r}")
    query = {"scope": f"repository:{repository}:{actions}"}
    if "service" in challenge:
        query["service"] = challenge["service"]
    url = f"{realm}?{urllib.parse.urlencode(query)}"
    status, _, body = _get(opener, url, credentials, timeout)
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else ""
    if not isinstance(token, str) or not token:
        raise ValueError(f"registry {host}'s token realm answered 200 without a token")
    return token


def _grants(token: str, repository: str, action: str) -> bool | None:
    """Whether a JWT token's `access` claim grants `action` on `repository` (Docker Hub and
    the distribution registry's token servers narrow the scope instead of refusing); None
    when the token is opaque (GHCR) and cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    return any(
        isinstance(entry, dict)
        and entry.get("type") == "repository"
        and entry.get("name") == repository
        and action in (entry.get("actions") or [])
        for entry in access
    )
