"""The engine's exclude rules for loading a directory (`Ignore([...])`, `exclude=`).

A contextual `Directory` argument is loaded with `host.directory(path, exclude=IGNORE)`
(core/modfunc.go `loadContextualArg` -> core/modulesource.go `loadContextFromSource`). The
host side walks the folder with fsutil's filter (engine/client/filesync.go `DiffCopy`:
`fsutil.NewFilterFS` with `ExcludePatterns`), which matches with moby/patternmatcher's
`MatchesUsingParentResults`. The rules modelled here:

- core/schema/host.go `directory`: a leading `!` is cut off, a pattern that is not
  `filepath.IsLocal` (absolute like `/x`, escaping like `../x`, empty) is dropped silently,
  the rest is `filepath.Join`ed to the copy root (cleaned: `./x` -> `x`), `.` becomes `*`.
- patternmatcher `New`: patterns trimmed and cleaned, `!` re-includes, the last matching
  pattern wins; `*`/`?` never cross `/`, `**` crosses any number of folders, `[...]` classes,
  `\\` escapes; a pattern matching a folder matches everything under it.
- fsutil filter `Walk`: an excluded folder is not walked unless a `!` pattern could
  re-include something in it; it appears in the result only when something under it does.
  Folders that are not excluded are kept even when empty; symlinks are not followed.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

# Characters that make a pattern more than a literal path (fsutil filter.go `NewFilterFS`).
_GLOB_CHARS = "*[]?^\\"
# Regexp metacharacters that are literal in patterns (patternmatcher `shouldEscape`).
_LITERAL_META = set(".+()|{}$")


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            # "**/foo" also matches "foo" itself.
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.match(path) is not None


# Per pattern: whether it matched this folder or one above it (patternmatcher `MatchInfo`).
_MatchInfo = tuple[bool, ...]


def _go_clean(path: str) -> str:
    """Go's path.Clean: unlike normpath, a leading "//" becomes "/"."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _is_local(path: str) -> bool:
    """Go's filepath.IsLocal on Unix: relative, not empty, never above its root."""
    if not path or path.startswith("/"):
        return False
    cleaned = _go_clean(path)
    return cleaned != ".." and not cleaned.startswith("../")


def _engine_patterns(patterns: Sequence[str]) -> list[str]:
    """The exclude list as host.directory rewrites it (core/schema/host.go `directory`)."""
    rewritten = []
    for pattern in patterns:
        negative = pattern.startswith("!")
        body = pattern[1:] if negative else pattern
        if not _is_local(body):
            continue
        body = _go_clean(body)
        # "." would never match: the engine means "everything" by it.
        body = "*" if body == "." else body
        rewritten.append("!" + body if negative else body)
    return rewritten


def _translate(text: str) -> tuple[_Kind, str]:
    """Kind and regexp of a cleaned pattern (patternmatcher `Pattern.compile`)."""
    regexp, kind, i = "^", _Kind.EXACT, 0
    first = True
    while i < len(text):
        char = text[i]
        i += 1
        if char == "*" and text[i : i + 1] == "*":
            i += 1
            if text[i : i + 1] == "/":
                i += 1  # "**/" is read as "**"
            if i == len(text):
                if kind is _Kind.EXACT:
                    kind = _Kind.PREFIX
                else:
                    regexp, kind = regexp + ".*", _Kind.REGEXP
            else:
                regexp, kind = regexp + "(.*/)?", _Kind.REGEXP
            if first:
                kind = _Kind.SUFFIX
        elif char == "*":
            regexp, kind = regexp + "[^/]*", _Kind.REGEXP
        elif char == "?":
            regexp, kind = regexp + "[^/]", _Kind.REGEXP
        elif char in _LITERAL_META:
            regexp += "\\" + char
        elif char == "\\":
            if i < len(text):
                escaped = text[i]
                i += 1
                regexp += "\\" + escaped if escaped.isalnum() else re.escape(escaped)
                kind = _Kind.REGEXP
            else:
                regexp += "\\\\"
        elif char in "[]":
            regexp, kind = regexp + char, _Kind.REGEXP
        else:
            regexp += char
        first = False
    return kind, regexp + "$"


def _compile(pattern: str) -> _Pattern | None:
    """One pattern as patternmatcher `New` reads it; None for a blank one."""
    text = pattern.strip()
    if not text:
        return None
    text = _go_clean(text)
    exclusion = text.startswith("!")
    if exclusion:
        if len(text) == 1:
            raise ValueError('illegal exclusion pattern: "!"')
        text = text[1:]
    kind, source = _translate(text)
    try:
        regexp = re.compile(source) if kind is _Kind.REGEXP else None
    except re.error as error:
        raise ValueError(f"bad ignore pattern {pattern!r}: {error}") from None
    return _Pattern(text, exclusion, kind, regexp)


class _Matcher:
    """The exclude matcher of one load: the patterns after the engine's rewriting."""

    def __init__(self, patterns: Sequence[str]) -> None:
        compiled = (_compile(pattern) for pattern in _engine_patterns(patterns))
        self.patterns = [pattern for pattern in compiled if pattern is not None]
        self.exclusions = [pattern for pattern in self.patterns if pattern.exclusion]
        # fsutil only prunes folders when every "!" pattern is a literal path.
        self.prunes = all(
            not any(char in _GLOB_CHARS for char in _without_trailing_glob(pattern.text))
            for pattern in self.exclusions
        )

    def match(self, path: str, parent: _MatchInfo | None) -> tuple[bool, _MatchInfo]:
        """Excluded or not, and what children inherit (`MatchesUsingParentResults`)."""
        excluded = False
        info: list[bool] = []
        for index, pattern in enumerate(self.patterns):
            hit = parent[index] if parent is not None else False
            # A pattern that cannot change the verdict is not evaluated, nor recorded.
            if not hit and pattern.exclusion == excluded:
                hit = pattern.matches(path) or (
                    parent is None and _any_parent_matches(pattern, path)
                )
            elif not hit:
                info.append(False)
                continue
            info.append(hit)
            if hit:
                excluded = not pattern.exclusion
        return excluded, tuple(info)

    def walks_into(self, folder: str) -> bool:
        """Whether an excluded folder is still walked (fsutil filter.go `Walk`)."""
        if not self.prunes:
            return True
        prefix = folder + "/"
        return any(
            (_without_trailing_glob(pattern.text) + "/").startswith(prefix)
            for pattern in self.exclusions
        )


def _without_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


def _any_parent_matches(pattern: _Pattern, path: str) -> bool:
    parts = path.split("/")[:-1]
    return any(pattern.matches("/".join(parts[: depth + 1])) for depth in range(len(parts)))


def _relative(path: str) -> str:
    cleaned = _go_clean(path.replace(os.sep, "/")).lstrip("/") or "."
    if cleaned == ".." or cleaned.startswith("../"):
        raise ValueError(f"path {path!r} is outside the loaded directory")
    return cleaned


def is_excluded(relative_path: str, patterns: Sequence[str]) -> bool:
    """Whether the engine leaves this path out when it loads a directory with these patterns.

    For a folder, True means the folder is not loaded for itself: it still appears when
    something under it is re-included by a `!` pattern.
    """
    path = _relative(relative_path)
    if path == ".":
        return False
    matcher = _Matcher(patterns)
    parts = path.split("/")
    info: _MatchInfo | None = None
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth])
        excluded, info = matcher.match(folder, info)
        if excluded and not matcher.walks_into(folder):
            return True
    return matcher.match(path, info)[0]


@dataclass
class _Copy:
    matcher: _Matcher
    source: Path
    destination: Path
    folder_modes: list[tuple[Path, os.stat_result]]

    def walk(self, relative: str, info: _MatchInfo | None, pending: list[str]) -> None:
        """Copy the entries of one folder; `pending` are excluded folders not created yet."""
        folder = self.source / relative if relative else self.source
        for entry in sorted(os.scandir(folder), key=lambda item: item.name):
            path = f"{relative}/{entry.name}" if relative else entry.name
            excluded, child_info = self.matcher.match(path, info)
            if entry.is_dir(follow_symlinks=False):
                if not excluded:
                    self._emit_folder(pending, path)
                    self.walk(path, child_info, [])
                elif self.matcher.walks_into(path):
                    self.walk(path, child_info, [*pending, path])
            elif not excluded:
                self._emit_folder(pending, None)
                self._copy_entry(entry, path)

    def _emit_folder(self, pending: list[str], folder: str | None) -> None:
        # Excluded folders above an included entry appear after all (fsutil `parentDirs`).
        for path in [*pending, *([folder] if folder else [])]:
            target = self.destination / path
            if not target.exists():
                target.mkdir()
                self.folder_modes.append((target, os.lstat(self.source / path)))
        pending.clear()

    def _copy_entry(self, entry: os.DirEntry[str], path: str) -> None:
        target = self.destination / path
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry.path))
        elif entry.is_file(follow_symlinks=False):
            shutil.copy2(entry.path, target, follow_symlinks=False)
        else:
            # Sockets, fifos and devices are not modelled: refuse rather than differ.
            raise ValueError(f"cannot load {entry.path}: not a file, folder or symlink")


def copy_tree(source: Path, destination: Path, patterns: Sequence[str]) -> None:
    """Copy what the engine loads from `source` with these exclude patterns.

    Regular files keep their mode bits and times, symlinks stay symlinks, folders keep their
    modes (empty ones too). `destination` must not exist or be an empty folder.
    """
    if not source.is_dir():
        raise ValueError(f"cannot load {source}: not a folder")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ValueError(f"cannot copy into {destination}: it exists and is not an empty folder")
    matcher = _Matcher(patterns)
    destination.mkdir(parents=True, exist_ok=True)
    copy = _Copy(matcher, source, destination, [(destination, os.stat(source))])
    copy.walk("", None, [])
    # Modes last, deepest first: a read-only folder must not block its own contents.
    for target, status in reversed(copy.folder_modes):
        os.chmod(target, stat.S_IMODE(status.st_mode))
        os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns))
