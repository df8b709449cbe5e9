"""What tags a published image gets, like docker/metadata-action's conventions.

Pure Python, no dagger import: the rules are tested as a table without an engine
(docs/REGISTRY_GUIDE.md shows the same table, checked against this module).

    v1.2.3       → 1.2.3, 1.2, 1, latest
    v1.3.0-rc.1  → 1.3.0-rc.1            (a prerelease never moves 1.3, 1 or latest)
    v1.2         → 1.2, 1, latest        (a release line: no patch number is invented)
    main branch  → edge, sha-<7 hex>     (every push to main; a release never moves edge)
    a variant    → the same tags with its suffix from the variant table (1.2.3-gpu, …)

Backports: a floating tag (1.2, 1, latest) moves only when the release is at least as high as
every stable release already tagged in its scope. v1.4.2 after v2.0.0 publishes 1.4.2, 1.4
and 1 (if no 1.5.x exists), never latest.

Immutable tags name one build for good (1.2.3, 1.3.0-rc.1, sha-<7 hex>); floating tags move
from release to release (latest, 1, 1.2, edge). A release pushes its immutable tags first and
moves its floating tags only once those digests are signed (release.py); a release line
(v1.2) has no immutable tag of its own, so it also publishes sha-<7 hex> of its commit.

The leading "v" is optional. Build metadata ("+build.5") is rejected: "+" is not allowed in
an image tag, and silently dropping it would publish two builds under one tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
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

    @property
    def key(self) -> tuple[int, int, int]:
        """Numeric order of stable releases (a release line v1.2 sorts as 1.2.0)."""
        return int(self.major), int(self.minor), int(self.patch or 0)


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


def image_tags(tag: str, suffix: str = "", released: Sequence[str] = ()) -> list[str]:
    """The image tags one release tag publishes, most specific first, each with `suffix`.

    `released` are the repository's existing release tags (anything else in it is ignored):
    a floating tag is left where it is when a higher stable release is already in its scope.
    """
    release = parse_release(tag)
    if release.prerelease:
        return [f"{release.version}{suffix}"]
    others = [r.key for r in _stable(released)]
    tags = [release.version]
    for floating, scope in (
        (f"{release.major}.{release.minor}", 2),
        (release.major, 1),
        ("latest", 0),
    ):
        if all(key <= release.key for key in others if key[:scope] == release.key[:scope]):
            tags.append(floating)
    tags = list(dict.fromkeys(tags))  # v1.2 yields 1.2 twice: keep the first
    return [f"{t}{suffix}" for t in tags]


def _stable(tags: Iterable[str]) -> list[Release]:
    found = []
    for tag in tags:
        try:
            release = parse_release(tag)
        except ValueError:
            continue  # not a release tag
        if not release.prerelease:
            found.append(release)
    return found


_REVISION = re.compile(r"[0-9a-f]{40}")


def edge_tags(revision: str, suffix: str = "") -> list[str]:
    """What a push to the main branch publishes: edge and sha-<7 hex>, each with `suffix`."""
    return [f"edge{suffix}", commit_tag(revision, suffix, "an edge build")]


def commit_tag(revision: str, suffix: str = "", needed_by: str = "an edge build") -> str:
    """The immutable sha-<7 hex> tag of a commit, with `suffix`; `needed_by` says, in the
    one-line error, what asked for it."""
    if not _REVISION.fullmatch(revision):
        raise ValueError(
            f"invalid revision {revision!r}: {needed_by} needs the full 40-hex commit SHA "
            "(--revision)"
        )
    return f"sha-{revision[:7]}{suffix}"


_FLOATING = re.compile(rf"latest|edge|(?:{_NUMBER})(?:\.(?:{_NUMBER}))?")


def is_floating(tag: str, suffix: str = "") -> bool:
    """Whether `tag` (with the variant's `suffix`) moves from build to build: latest, edge,
    1 or 1.2. The others (1.2.3, 1.3.0-rc.1, sha-<7 hex>) name one build for good."""
    return tag.endswith(suffix) and bool(_FLOATING.fullmatch(tag.removesuffix(suffix)))


def tag_names(refs: Iterable[str]) -> list[str]:
    """Tag names, sorted and once each, from tag refs given short ("v1.2.3", as the engine's
    GitRepository.tags answers) or in full ("refs/tags/v1.2.3")."""
    return sorted({ref.removeprefix("refs/tags/") for ref in refs})


def git_release_tags(packed_refs: str, loose_tags: Iterable[str]) -> list[str]:
    """Tag names from a repository's .git: `packed-refs` text and the refs/tags/ file names."""
    names = [
        line.split()[1].removeprefix("refs/tags/")
        for line in packed_refs.splitlines()
        if line and not line.startswith(("#", "^")) and " refs/tags/" in line
    ]
    return sorted({*names, *loose_tags})
