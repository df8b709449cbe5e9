"""Release tag expansion (pure Python, the table of docs/REGISTRY_GUIDE.md)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx_serving.tags import image_tags, parse_release

# The tag grammar of the OCI distribution reference.
DOCKER_TAG = re.compile(r"[\w][\w.-]{0,127}")

EXPANSIONS = [
    ("v1.2.3", "", ["1.2.3", "1.2", "1", "latest"]),
    ("1.2.3", "", ["1.2.3", "1.2", "1", "latest"]),
    ("v1.2.3", "-gpu", ["1.2.3-gpu", "1.2-gpu", "1-gpu", "latest-gpu"]),
    ("v12.34.56", "", ["12.34.56", "12.34", "12", "latest"]),
    ("v0.1.0", "", ["0.1.0", "0.1", "0", "latest"]),
    ("v1.2", "", ["1.2", "1", "latest"]),
    ("v1.2", "-gpu", ["1.2-gpu", "1-gpu", "latest-gpu"]),
    ("v1.3.0-rc.1", "", ["1.3.0-rc.1"]),
    ("v1.3.0-rc.1", "-gpu", ["1.3.0-rc.1-gpu"]),
    ("v2.0.0-beta-2.x", "", ["2.0.0-beta-2.x"]),
    ("v1.2-alpha", "", ["1.2-alpha"]),
]


@pytest.mark.parametrize(("tag", "suffix", "expected"), EXPANSIONS)
def test_expansion(tag: str, suffix: str, expected: list[str]) -> None:
    assert image_tags(tag, suffix) == expected


def test_version_keeps_a_zero_patch() -> None:
    assert parse_release("v1.2.0").version == "1.2.0"
    assert image_tags("v1.2.0") == ["1.2.0", "1.2", "1", "latest"]


INVALID = [
    "",
    "latest",
    "v1",
    "1",
    "v1.2.3.4",
    "v01.2.3",
    "v1.02.3",
    "V1.2.3",
    "vv1.2.3",
    "v1.2.3-",
    "v1.2.3-rc..1",
    "v1.2.3+build.5",
    "v1.2.3 ",
    "v1.2.3\n",  # `$` alone would accept a trailing newline
    "v1.2.3-rc.1\n",
    "v1\u0661.2.3",  # ARABIC-INDIC DIGIT ONE: \d matches it, an image tag cannot hold it
    "release-1.2.3",
    "v1.2.3/evil",
    "v1.2.3-" + "a" * 130,
]


@pytest.mark.parametrize("tag", INVALID)
def test_invalid_tag_is_a_one_line_error_naming_it(tag: str) -> None:
    with pytest.raises(ValueError) as err:
        image_tags(tag)
    message = str(err.value)
    assert "\n" not in message
    assert repr(tag) in message


_numbers = st.integers(min_value=0, max_value=10_000)
_prerelease = st.from_regex(r"[0-9A-Za-z-]{1,8}(\.[0-9A-Za-z-]{1,8}){0,2}", fullmatch=True)


@given(_numbers, _numbers, _numbers, st.none() | _prerelease, st.sampled_from(["", "-gpu"]))
def test_every_semver_release_expands_to_valid_image_tags(
    major: int, minor: int, patch: int, pre: str | None, suffix: str
) -> None:
    version = f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else "")
    tags = image_tags(f"v{version}", suffix)
    assert tags[0] == version + suffix  # the most specific tag first
    assert all(DOCKER_TAG.fullmatch(t) for t in tags)
    assert len(tags) == len(set(tags))
    if pre:
        assert tags == [version + suffix]
    else:
        assert tags[1:] == [f"{major}.{minor}{suffix}", f"{major}{suffix}", f"latest{suffix}"]
