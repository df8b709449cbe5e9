"""Registry logins read from a Docker config file (docker_config.py): the entries `docker
login` and the cloud CLIs write, Docker Hub's legacy key, an ACR identity token, and a clear
error for a credential helper the module cannot run or an entry without a login."""

from __future__ import annotations

import base64
import json

import pytest

from onnx_serving.docker_config import TOKEN_USERNAME, Login, login


def _auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def _config(**document: object) -> str:
    return json.dumps(document)


def test_a_docker_login_entry_gives_its_user_and_password() -> None:
    text = _config(auths={"ghcr.io": {"auth": _auth("bot", "t0k:en")}})
    assert login(text, "ghcr.io") == Login("bot", "t0k:en")  # the password may hold colons
    assert login(text, "quay.io") is None


def test_docker_hub_is_found_under_its_legacy_key() -> None:
    text = _config(auths={"https://index.docker.io/v1/": {"auth": _auth("me", "pat")}})
    assert login(text, "docker.io") == Login("me", "pat")


@pytest.mark.parametrize(
    "key", ["https://ecr.example", "http://ecr.example", "https://ecr.example/", "ecr.example/v2/"]
)
def test_a_registry_filed_with_a_scheme_or_path_is_found(key: str) -> None:
    text = _config(auths={key: {"auth": _auth("AWS", "x")}})
    assert login(text, "ecr.example") == Login("AWS", "x")


def test_an_identity_token_is_given_as_a_token_login() -> None:
    entry = {"auth": _auth(TOKEN_USERNAME, ""), "identitytoken": "refresh-token"}
    text = _config(auths={"acme.azurecr.io": entry})
    assert login(text, "acme.azurecr.io") == Login(TOKEN_USERNAME, "refresh-token")
    # A full login beside a token: the login is what `docker login` stored last.
    text = _config(auths={"acme.azurecr.io": {**entry, "auth": _auth("ci", "pw")}})
    assert login(text, "acme.azurecr.io") == Login("ci", "pw")


def test_explicit_username_and_password_fields_are_read() -> None:
    text = _config(auths={"ghcr.io": {"username": "bot", "password": "pw"}})
    assert login(text, "ghcr.io") == Login("bot", "pw")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"credsStore": "desktop"}, "docker-credential-desktop, which publish cannot run"),
        (
            {"auths": {"ghcr.io": {}}, "credsStore": "desktop"},  # as Docker Desktop writes it
            "docker-credential-desktop, which publish cannot run",
        ),
        ({"auths": "ghcr.io"}, "must be JSON objects"),
        ({"credHelpers": "gh"}, "must be JSON objects"),
        ({"credHelpers": {"ghcr.io": "gh"}}, "docker-credential-gh, which publish cannot run"),
        ({"auths": {"ghcr.io": {"auth": "not base64!"}}}, "the entry for ghcr.io has no login"),
        ({"auths": {"ghcr.io": {"auth": _auth("bot", "")}}}, "the entry for ghcr.io has no login"),
        ({"auths": {"ghcr.io": "bot:pw"}}, "the entry for ghcr.io is not an object"),
    ],
)
def test_a_login_the_module_cannot_use_is_one_line_saying_why(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        login(json.dumps(document), "ghcr.io")


@pytest.mark.parametrize("text", ["{", "[]"])
def test_a_file_that_is_no_config_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--docker-config is not"):
        login(text, "ghcr.io")
