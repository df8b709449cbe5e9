"""The release tag length limit at its exact edge (ci/src/onnx_serving/tags.py): every tag a
release publishes, with the longest variant suffix, must fit Docker's 128 characters, so the
longest release tag accepted is 128 minus that suffix, with or without the leading "v"."""

from __future__ import annotations

import re

import pytest

from onnx_serving.tags import image_tags, parse_release
from onnx_serving.variants import Variant

MAX_TAG = 128  # Docker's reference grammar: a tag is at most 128 characters
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's tag grammar
LONGEST_SUFFIX = max((v.spec.tag_suffix for v in Variant), key=len)


def prerelease_of_length(length: int, v: str = "v") -> str:
    """A release tag whose version (without the "v") is `length` characters."""
    core = "1.2.3-rc."
    return v + core + "1" * (length - len(core))


@pytest.mark.parametrize("v", ["v", ""])
def test_the_longest_accepted_version_fits_with_the_longest_suffix(v: str) -> None:
    longest = MAX_TAG - len(LONGEST_SUFFIX)
    release = parse_release(prerelease_of_length(longest, v))
    assert len(release.version) == longest
    for variant in Variant:
        for tag in image_tags(prerelease_of_length(longest, v), variant.spec.tag_suffix):
            assert len(tag) <= MAX_TAG and TAG.fullmatch(tag), tag
    assert len(image_tags(prerelease_of_length(longest, v), LONGEST_SUFFIX)[0]) == MAX_TAG


@pytest.mark.parametrize("v", ["v", ""])
def test_one_character_more_is_refused(v: str) -> None:
    tag = prerelease_of_length(MAX_TAG - len(LONGEST_SUFFIX) + 1, v)
    with pytest.raises(ValueError, match=f"longer than {MAX_TAG} characters"):
        parse_release(tag)


def test_the_limit_counts_the_longest_suffix_not_the_cpu_one() -> None:
    """A version of exactly 128 characters would fit as a cpu tag, but not as a suffixed one:
    refused, so that every variant of a release can be published."""
    assert LONGEST_SUFFIX  # some variant has a suffix
    with pytest.raises(ValueError, match="longer than"):
        parse_release(prerelease_of_length(MAX_TAG))


def test_a_stable_release_with_long_numbers_at_the_edge() -> None:
    """The numbers count too: 1.2.<digits> of exactly the allowed length."""
    allowed = MAX_TAG - len(LONGEST_SUFFIX)
    patch = "9" * (allowed - len("1.2."))
    assert parse_release(f"v1.2.{patch}").version == f"1.2.{patch}"
    with pytest.raises(ValueError, match="longer than"):
        parse_release(f"v1.2.{patch}9")
