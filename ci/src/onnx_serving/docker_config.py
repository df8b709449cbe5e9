"""Registry logins from a Docker config file (`~/.docker/config.json`), for `publish
--docker-config`: what `docker login`, `aws ecr get-login-password | docker login`,
`gcloud auth print-access-token | docker login` or `az acr login --expose-token` leave in its
`auths`. A credential helper (`credsStore`, `credHelpers`) is a program on the machine that
wrote the file; the module cannot run it, so a login kept there is an error saying so."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

# The user name a registry token is given with (ACR's refresh tokens, as its CLI does).
TOKEN_USERNAME = "00000000-0000-0000-0000-000000000000"
# The names Docker Hub's logins are filed under (`docker login` uses index.docker.io).
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def login(text: str, host: str) -> Login | None:
    """The login the config file holds for `host`; None when it holds none. A ValueError
    names what is wrong with the file or the entry."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"--docker-config is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError("--docker-config is not a Docker config file (a JSON object)")
    auths, helpers = config.get("auths") or {}, config.get("credHelpers") or {}
    if not isinstance(auths, dict) or not isinstance(helpers, dict):
        raise ValueError("--docker-config: `auths` and `credHelpers` must be JSON objects")
    wanted = _hostname(host)
    entry = next((e for key, e in auths.items() if _hostname(key) == wanted), None)
    helper = helpers.get(host) or config.get("credsStore")
    if not entry and helper:  # Docker files an empty entry where a helper keeps the login
        raise ValueError(
            f"--docker-config keeps the login for {host} in the credential helper "
            f"docker-credential-{helper}, which publish cannot run: write the file's `auths` "
            "entry yourself (docs/REGISTRY_GUIDE.md), or give --username and --password"
        )
    return _entry_login(entry, host) if entry is not None else None


def _hostname(key: str) -> str:
    """The registry an `auths` key names, as Docker reads it: no scheme, no path; Docker
    Hub's keys all name docker.io."""
    name = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return "docker.io" if name in _DOCKER_HUB else name


def _entry_login(entry: object, host: str) -> Login:
    if not isinstance(entry, dict):
        raise ValueError(f"--docker-config: the entry for {host} is not an object")
    if entry.get("username") and entry.get("password"):
        return Login(str(entry["username"]), str(entry["password"]))
    try:
        decoded = base64.b64decode(str(entry.get("auth", "")), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    username, colon, password = decoded.partition(":")
    if username and colon and password:
        return Login(username, password)
    if entry.get("identitytoken"):  # ACR: `auth` names the token user, without a password
        return Login(TOKEN_USERNAME, str(entry["identitytoken"]))
    raise ValueError(
        f"--docker-config: the entry for {host} has no login (auth is not base64 "
        "user:password, and there is no identitytoken)"
    )
