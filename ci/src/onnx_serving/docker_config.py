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
# The keys `docker login` files Docker Hub under.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"


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
    auths = config.get("auths") or {}
    entry = next((auths[key] for key in _keys(host) if key in auths), None)
    if entry is None:
        helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
        if helper:
            raise ValueError(
                f"--docker-config keeps the login for {host} in the credential helper "
                f"docker-credential-{helper}, which publish cannot run: log in with "
                "`docker --config DIR login` into a config without credsStore, or give "
                "--username and --password"
            )
        return None
    return _entry_login(entry, host)


def _keys(host: str) -> list[str]:
    """The `auths` keys a login for `host` may be filed under."""
    names = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"]
    return [_DOCKER_HUB_KEY, *names] if host in _DOCKER_HUB else names


def _entry_login(entry: object, host: str) -> Login:
    if not isinstance(entry, dict):
        raise ValueError(f"--docker-config: the entry for {host} is not an object")
    if entry.get("identitytoken"):
        return Login(TOKEN_USERNAME, str(entry["identitytoken"]))
    if entry.get("username") and entry.get("password"):
        return Login(str(entry["username"]), str(entry["password"]))
    try:
        decoded = base64.b64decode(str(entry.get("auth", "")), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    username, colon, password = decoded.partition(":")
    if not (username and colon and password):
        raise ValueError(
            f"--docker-config: the entry for {host} has no login (auth is not base64 "
            "user:password, and there is no identitytoken)"
        )
    return Login(username, password)
