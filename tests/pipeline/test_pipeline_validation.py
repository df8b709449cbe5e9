"""Argument checks at their edges (ci/src/onnx_serving/validation.py): the last valid value is
accepted, the first invalid one is a one-line error naming it."""

from __future__ import annotations

import pytest

from onnx_serving import validation
from onnx_serving.variants import PUBLISHED


@pytest.mark.parametrize(
    "host",
    ["localhost:1", "localhost:65535", "127.0.0.1:5000", "ghcr.io", "registry-1.docker.io"],
)
def test_registry_hosts_and_ports_in_range_are_accepted(host: str) -> None:
    assert validation.registry(host) == host


@pytest.mark.parametrize("host", ["localhost:0", "localhost:65536", "localhost:99999"])
def test_registry_port_out_of_range_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="out of range") as refused:
        validation.registry(host)
    assert repr(host) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_image_name_of_255_characters_is_the_longest_accepted() -> None:
    registry = "ghcr.io"
    longest = "acme/" + "x" * (255 - len(registry) - 1 - len("acme/"))
    assert validation.repository(longest, registry) == longest
    with pytest.raises(ValueError, match="exceeds 255 characters"):
        validation.repository(longest + "x", registry)


def test_no_variant_names_every_published_one() -> None:
    with pytest.raises(ValueError) as refused:
        validation.published_variants([])
    message = str(refused.value)
    assert all(variant.value in message for variant in PUBLISHED), message


@pytest.mark.parametrize("username", ["", "  "])
def test_blank_username_is_refused_even_with_a_password(username: str) -> None:
    with pytest.raises(ValueError) as refused:
        validation.credentials(username, has_password=True)
    assert str(refused.value) == (
        "invalid username '': give a registry user name or omit --username"
    )


@pytest.mark.parametrize(
    ("url", "token", "password", "message"),
    [
        (True, False, True, "give --oidc-request-url and --oidc-request-token together"),
        (False, True, True, "give --oidc-request-url and --oidc-request-token together"),
        (
            True,
            True,
            False,
            "signing pushes signatures to the registry: give --username and --password too",
        ),
    ],
)
def test_signing_says_which_arguments_it_still_needs(
    url: bool, token: bool, password: bool, message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        validation.signing(url, token, has_password=password)
    assert str(refused.value).startswith(message)


def test_signing_is_on_with_both_oidc_secrets_and_off_without() -> None:
    assert validation.signing(True, True, has_password=True) is True
    assert validation.signing(False, False, has_password=False) is False


# ----- whole-value matches: a valid value with anything before or after it is refused --------


@pytest.mark.parametrize("tag", ["latest", "edge", "1", "1.2", "1.2.3", "11.22.33"])
def test_tags_users_pull_are_accepted(tag: str) -> None:
    assert validation.floating_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "latest-gpu",  # the suffix is the variant table's to add
        "edge-gpu",
        "xlatest",
        "edge2",
        "1.2.3.4",
        "1.2.3-rc.1",
        "v1.2.3",
        "1.2.",
        ".1.2",
        "",
        "latest\n",
        " edge",
    ],
)
def test_a_tag_is_matched_whole(tag: str) -> None:
    with pytest.raises(ValueError) as refused:
        validation.floating_tag(tag)
    assert repr(tag) in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "host",
    [
        "ghcr.io/",
        "/ghcr.io",
        " ghcr.io",
        "ghcr.io ",
        ".ghcr.io",
        "ghcr.io.",
        "-ghcr.io",
        "ghcr.io-",
        "ghcr.io:",
        "ghcr.io:5000x",
        "x/ghcr.io:5000",
        "ghcr.io:5000/acme",
        "https://localhost:5000",
        "user@ghcr.io",
    ],
)
def test_a_registry_is_matched_whole(host: str) -> None:
    with pytest.raises(ValueError, match="invalid registry") as refused:
        validation.registry(host)
    assert repr(host) in str(refused.value)


@pytest.mark.parametrize(
    "path",
    [
        "acme/onnx/",
        "/acme/onnx",
        " acme/onnx",
        "acme/onnx ",
        "acme/onnx:1.2.3",
        "acme/onnx@sha256:abc",
        "_acme/onnx",
        "acme/onnx_",
        "acme/onnx-",
        ".acme/onnx",
        "ghcr.io:5000/acme",
        "acme/onnx\t",
    ],
)
def test_a_repository_is_matched_whole(path: str) -> None:
    with pytest.raises(ValueError, match="invalid repository") as refused:
        validation.repository(path, "ghcr.io")
    assert repr(path) in str(refused.value)


@pytest.mark.parametrize("path", ["acme/onnx", "a/b/c", "acme/onnx-serving", "acme/onnx__x.y"])
def test_repository_paths_of_the_reference_grammar_are_accepted(path: str) -> None:
    assert validation.repository(path, "ghcr.io") == path
