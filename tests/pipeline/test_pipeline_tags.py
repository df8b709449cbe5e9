"""Release tag expansion (pure Python, the table of docs/REGISTRY_GUIDE.md)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx_serving.tags import edge_tags, git_release_tags, image_tags, parse_release

from .plan import REPO

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
    ("v1.2.3-rc1", "", ["1.2.3-rc1"]),  # a prerelease: only its own tag
    ("v1.2.3-rc1", "-gpu", ["1.2.3-rc1-gpu"]),
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
    "xv1.2.3",
    "v1.2.3x",
    "v1.2.3.",
    "v1.2.3-rc1x!",
    "v1.2x",
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


BACKPORTS = [
    ("v1.4.2", ["v2.0.0"], ["1.4.2", "1.4", "1"]),
    ("v1.4.2", ["v1.5.0", "v2.0.0"], ["1.4.2", "1.4"]),
    ("v1.4.2", ["v1.4.3"], ["1.4.2"]),
    ("v1.4.2", ["v1.4.2", "v1.4.1"], ["1.4.2", "1.4", "1", "latest"]),  # its own tag is there
    ("v2.1.0", ["v2.0.0", "v1.9.9"], ["2.1.0", "2.1", "2", "latest"]),
    ("v1.4.2", ["v3.0.0-rc.1", "nightly", "v2"], ["1.4.2", "1.4", "1", "latest"]),  # ignored
    ("v1.3.0-rc.2", ["v1.0.0"], ["1.3.0-rc.2"]),
]


@pytest.mark.parametrize(("tag", "released", "expected"), BACKPORTS)
def test_floating_tags_move_only_for_the_newest_release_in_scope(
    tag: str, released: list[str], expected: list[str]
) -> None:
    assert image_tags(tag, released=released) == expected
    assert image_tags(tag, "-gpu", released) == [f"{t}-gpu" for t in expected]


def test_edge_publishes_edge_and_the_short_commit() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert edge_tags(sha) == ["edge", "sha-0123456"]
    assert edge_tags(sha, "-gpu") == ["edge-gpu", "sha-0123456-gpu"]
    for bad in ("", "0123456", sha.upper(), sha + "0", "main"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))) as error:
            edge_tags(bad)
        assert str(error.value).endswith("full 40-hex commit SHA (--revision)")  # what to pass


def test_release_tags_are_read_from_packed_and_loose_refs() -> None:
    packed = (
        "# pack-refs with: peeled fully-peeled sorted \n"
        f"{'a' * 40} refs/heads/main\n"
        f"{'b' * 40} refs/tags/v1.0.0\n"
        f"^{'c' * 40}\n"
        f"{'d' * 40} refs/tags/v1.1.0\n"
    )
    assert git_release_tags(packed, ["v2.0.0", "v1.0.0"]) == ["v1.0.0", "v1.1.0", "v2.0.0"]


def _guide_rows() -> list[list[str]]:
    """The tag table of docs/REGISTRY_GUIDE.md: [published for, cpu tags, gpu tags]."""
    text = (REPO / "docs/REGISTRY_GUIDE.md").read_text()
    table = text.split("## Tag policy")[1].split("\n\n")[2]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return rows[2:]


def test_the_registry_guide_shows_what_the_code_does() -> None:
    checked = 0
    for published_for, cpu, gpu in _guide_rows():
        shown_cpu = re.findall(r"`([^`]+)`", cpu)
        shown_gpu = re.findall(r"`([^`]+)`", gpu)
        [tag, *_] = re.findall(r"`([^`]+)`", published_for) or [""]
        if published_for.startswith("push to `main`"):
            sha = "0123456" + "0" * 33
            assert shown_cpu == edge_tags(sha) and shown_gpu == edge_tags(sha, "-gpu")
        elif cpu.startswith("error"):
            for bad in re.findall(r"`([^`]+)`", published_for):
                with pytest.raises(ValueError, match="invalid release tag"):
                    image_tags(bad)
        else:
            released = re.findall(r"`(v[^`]+)` exists", published_for)
            assert shown_cpu == image_tags(tag, "", released), published_for
            assert shown_gpu == image_tags(tag, "-gpu", released), published_for
        checked += 1
    assert checked == 7
