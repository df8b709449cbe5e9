"""Semver release tag → image tags, like docker/metadata-action's semver patterns.

Pure Python, no dagger import: the rules are tested as a table without an engine.

    v1.2.3       → 1.2.3, 1.2, 1, latest
    v1.3.0-rc.1  → 1.3.0-rc.1            (a prerelease never moves 1.3, 1 or latest)
    v1.2         → 1.2, 1, latest        (a release line: no patch number is invented)
    a variant    → the same tags with its suffix from the variant table (1.2.3-gpu, …)

The leading "v" is optional. Build metadata ("+build.5") is rejected: "+" is not allowed in
an image tag, and silently dropping it would publish two builds under one tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .variants import Variant

_NUMBER = r"0|[1-9][0-9]*"  # ASCII digits: \d would also take other scripts' digits
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})(?:\.(?P<patch>{_NUMBER}))?"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
)

# Docker's own limit on a tag (the reference grammar allows 128 characters), with room for
# the longest variant suffix.
_MAX_TAG_LENGTH = 128
_LONGEST_SUFFIX = max(len(v.spec.tag_suffix) for v in Variant)


@dataclass(frozen=True)
class Release:
    """A parsed release tag."""

    major: str
    minor: str
    patch: str | None
    prerelease: str | None

    @property
    def version(self) -> str:
        """The full version without the "v": the image's VERSION label."""
        core = f"{self.major}.{self.minor}" + (f".{self.patch}" if self.patch else "")
        return core + (f"-{self.prerelease}" if self.prerelease else "")


def parse_release(tag: str) -> Release:
    """Parse `tag` (v1.2.3, 1.2.3, v1.2, v1.3.0-rc.1) or raise a one-line ValueError."""
    match = _SEMVER.fullmatch(tag)
    if match is None:
        raise ValueError(
            f"invalid release tag {tag!r}: expected a semver tag like v1.2.3, v1.2 or v1.3.0-rc.1"
        )
    # A missing patch is None; "0" is a real patch and must stay.
    release = Release(match["major"], match["minor"], match["patch"], match["pre"])
    if len(release.version) + _LONGEST_SUFFIX > _MAX_TAG_LENGTH:
        raise ValueError(f"invalid release tag {tag!r}: longer than {_MAX_TAG_LENGTH} characters")
    return release


def image_tags(tag: str, suffix: str = "") -> list[str]:
    """The image tags one release tag publishes, most specific first, each with `suffix`."""
    release = parse_release(tag)
    if release.prerelease:
        tags = [release.version]
    else:
        tags = [release.version, f"{release.major}.{release.minor}", release.major, "latest"]
        tags = list(dict.fromkeys(tags))  # v1.2 yields 1.2 twice: keep the first
    return [f"{t}{suffix}" for t in tags]
