"""GitRepository: the repository of a checkout on this machine, read with its own `git`.

A local module's contextual repository is its context directory's (core/modulesource.go
`LoadContextGit`); where `.git` is a pointer file (a `git worktree`, a submodule) the engine
follows it to the real git directory (core/modulesource_gitfile.go, in the engine since
dagger/dagger#13577). `git -C CHECKOUT` follows the same pointer, so both kinds of checkout
are read alike here.
"""

from __future__ import annotations

import asyncio
import fnmatch
import posixpath
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import EngineError

if TYPE_CHECKING:
    from .session import Session

TAGS = "refs/tags/"


@dataclass(frozen=True, eq=False)
class GitRepository:
    type_name: ClassVar[str] = "GitRepository"
    checkout: str  # the work tree's host path; its `.git` is a folder or a pointer file

    def definition(self) -> Any:
        return [self.checkout]

    def id(self, session: Session) -> str:
        return session.store.register(self)

    async def tags(self, session: Session, patterns: list[str] | None = None) -> list[str]:
        """`GitRepository.tags`: short names ("v1.2.3"), in ref order, of the tags matching
        any pattern (core/schema/git.go `tags`: Filter, Tags, ShortNames)."""
        refs = await session.once(self, lambda: asyncio.to_thread(refs_of, self.checkout))
        return matching_tags(refs, patterns)


def matching_tags(refs: Iterable[str], patterns: Sequence[str] | None) -> list[str]:
    """The short names of the tag refs that match any pattern (all tags without patterns)."""
    return [
        ref.removeprefix(TAGS)
        for ref in refs
        if ref.startswith(TAGS) and (not patterns or any(matches(p, ref) for p in patterns))
    ]


def refs_of(checkout: str) -> list[str]:
    """Every ref of the checkout's repository, full names sorted as `git ls-remote` lists
    them; a tag once (no peeled `^{}` entry)."""
    done = subprocess.run(
        ["git", "-C", checkout, "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise EngineError(f"local engine: reading the refs of {checkout}: {reason}")
    return done.stdout.split()


def matches(pattern: str, ref: str) -> bool:
    """The engine's pattern rule (util/gitutil/glob.go `gitTailMatch`): the glob matches the
    ref's tail after a `/`, and `*` spans `/` too, so "refs/tags/v*" and "v*" both match
    refs/tags/v1.2.3 (fnmatch stands for git's wildmatch: POSIX classes are not modelled)."""
    return fnmatch.fnmatchcase("/" + ref, "*/" + pattern)


def contextual_repository(context: Path, default_path: str) -> GitRepository:
    """A GitRepository argument's `DefaultPath`: "/", ".", "/.git" and "./.git" all name the
    repository of the module's context (core/modfunc.go `loadContextualGitArg`: the path,
    trimmed of "/" and cleaned, is "." or ".git"); a git URL there is not modelled."""
    cleaned = posixpath.normpath(default_path.strip("/") or ".")
    if cleaned not in (".", ".git"):
        raise EngineError(
            f"local engine: a GitRepository default path other than the context's own "
            f"repository ({default_path!r}) is not modelled"
        )
    return checkout_repository(context, f"the context {context}")


def checkout_repository(checkout: Path, what: str) -> GitRepository:
    """The repository of a host checkout; `what` names it in the error."""
    if not (checkout / ".git").exists():  # a folder, or a worktree's or submodule's file
        raise EngineError(f"local engine: {what} is not a git checkout (no .git)")
    return GitRepository(str(checkout))
