"""Directory and File: immutable trees, each materialised once as a host folder.

A Directory is the chain of calls that made it; its tree is built on first use under the
session's state folder (content-addressed by that chain) and never changed afterwards, so a
later call sees the snapshot the engine would. Paths are cleaned as the engine cleans them:
relative to the directory's root, `..` never escaping it.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from . import ignore
from .errors import EngineError
from .values import refuse_unmodelled

if TYPE_CHECKING:
    from .container import Container
    from .session import Session


def clean(path: str) -> str:
    """A path inside a directory: `/a/./b/` and `a/b` are both `a/b`; escaping is an error."""
    cleaned = posixpath.normpath("/" + path).lstrip("/")
    return "" if cleaned == "." else cleaned


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Doublestar rules as `Directory.glob` uses them (core/directory.go `Glob`, v0.21.8):
    `**` spans any number of path segments, `*` and `?` stay within one."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True, eq=False)
class Directory:
    type_name: ClassVar[str] = "Directory"
    op: str
    args: tuple[Any, ...] = ()
    parent: Any = None  # a Directory, or the Container of `inContainer`

    def definition(self) -> Any:
        return [self.op, list(self.args), self.parent]

    def _then(self, op: str, *args: Any) -> Directory:
        return Directory(op, args, self)

    # ----- fields returning objects (lazy) ------------------------------------------------

    def id(self, session: Session) -> str:
        return session.store.register(self)

    def with_new_file(
        self, session: Session, path: str, contents: str, permissions: int = 0o644, **kw: Any
    ) -> Directory:
        refuse_unmodelled("Directory.withNewFile", kw, set())
        return self._then("withNewFile", clean(path), contents, permissions)

    def with_file(
        self, session: Session, path: str, source: File, permissions: int | None = None, **kw: Any
    ) -> Directory:
        refuse_unmodelled("Directory.withFile", kw, set())
        return self._then("withFile", clean(path), source, permissions)

    def with_directory(
        self,
        session: Session,
        path: str,
        source: Directory,
        exclude: list[str] | None = None,
        include: list[str] | None = None,
        **kw: Any,
    ) -> Directory:
        refuse_unmodelled("Directory.withDirectory", {"include": include, **kw}, set())
        return self._then("withDirectory", clean(path), source, tuple(exclude or ()))

    def without_directory(self, session: Session, path: str) -> Directory:
        return self._then("without", clean(path))

    def without_file(self, session: Session, path: str) -> Directory:
        return self._then("without", clean(path))

    def directory(self, session: Session, path: str) -> Directory:
        return Directory("subdirectory", (clean(path),), self)

    def file(self, session: Session, path: str) -> File:
        return File("inDirectory", (clean(path),), self)

    def docker_build(self, session: Session, **args: Any) -> Container:
        from .build import docker_build

        return docker_build(session, self, **args)

    # ----- leaves (evaluated) -----------------------------------------------------------

    async def glob(self, session: Session, pattern: str) -> list[str]:
        root = await materialise(session, self)
        regex = glob_regex(clean(pattern) if pattern not in ("", ".") else "*")
        found = []
        for folder, dirs, files in os.walk(root):
            relative = os.path.relpath(folder, root)
            prefix = "" if relative == "." else relative + "/"
            found += [prefix + d + "/" for d in dirs if regex.match(prefix + d)]
            found += [prefix + f for f in files if regex.match(prefix + f)]
        return sorted(found)

    async def entries(self, session: Session, path: str = "", **kw: Any) -> list[str]:
        refuse_unmodelled("Directory.entries", kw, set())
        root = await materialise(session, self) / clean(path)
        if not root.is_dir():
            raise EngineError(f"local engine: {path!r}: no such directory")
        return sorted(e.name + ("/" if e.is_dir() else "") for e in root.iterdir())

    async def export(self, session: Session, path: str, wipe: bool = False, **kw: Any) -> str:
        refuse_unmodelled("Directory.export", kw, set())
        root = await materialise(session, self)
        target = Path(path).resolve()
        if wipe and target.exists():
            shutil.rmtree(target)
        shutil.copytree(root, target, symlinks=True, dirs_exist_ok=True)
        return str(target)

    async def sync(self, session: Session) -> str:
        await materialise(session, self)
        return session.store.register(self)


@dataclass(frozen=True, eq=False)
class File:
    type_name: ClassVar[str] = "File"
    op: str  # inDirectory (parent: Directory) / inContainer / tarball (parent: Container)
    args: tuple[Any, ...] = ()
    parent: Any = None

    def definition(self) -> Any:
        return [self.op, list(self.args), self.parent]

    def id(self, session: Session) -> str:
        return session.store.register(self)

    async def contents(self, session: Session, **kw: Any) -> str:
        refuse_unmodelled("File.contents", kw, set())
        return (await file_path(session, self)).read_text()

    async def size(self, session: Session) -> int:
        return (await file_path(session, self)).stat().st_size

    def name(self, session: Session) -> str:
        return posixpath.basename(str(self.args[0])) if self.args else "image.tar"

    async def export(self, session: Session, path: str, **kw: Any) -> str:
        refuse_unmodelled("File.export", kw, set())
        source = await file_path(session, self)
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    async def sync(self, session: Session) -> str:
        await file_path(session, self)
        return session.store.register(self)


async def materialise(session: Session, directory: Directory) -> Path:
    """The directory's tree on the host, built once per definition."""
    return await session.once(directory, lambda: _build_tree(session, directory))


async def _build_tree(session: Session, directory: Directory) -> Path:
    from .rootfs import container_directory

    target = session.scratch_path(directory)
    op, args = directory.op, directory.args
    if op == "host":
        source, patterns = args
        ignore.copy_tree(Path(source), target, patterns)
        return target
    if op == "empty":
        target.mkdir(parents=True)
        return target
    if op == "inContainer":
        return await container_directory(session, directory.parent, args[0], target)
    assert directory.parent is not None
    base = await materialise(session, directory.parent)
    if op == "subdirectory":
        source = base / args[0]
        if not source.is_dir():
            raise EngineError(f"local engine: directory {args[0]!r}: no such file or directory")
        shutil.copytree(source, target, symlinks=True)
        return target
    shutil.copytree(base, target, symlinks=True)
    if op == "withNewFile":
        path, contents, permissions = args
        _write(target / path, contents.encode(), permissions)
    elif op == "withFile":
        path, source_file, permissions = args
        data_path = await file_path(session, source_file)
        mode = permissions if permissions is not None else data_path.stat().st_mode & 0o7777
        _write(target / path, data_path.read_bytes(), mode)
    elif op == "withDirectory":
        path, source_dir, exclude = args
        source_root = await materialise(session, source_dir)
        destination = target / path
        if destination.exists() and not destination.is_dir():
            destination.unlink()
        staged = session.scratch_path(directory, "staged")
        ignore.copy_tree(source_root, staged, exclude)
        shutil.copytree(staged, destination, symlinks=True, dirs_exist_ok=True)
    elif op == "without":
        victim = target / args[0]
        if victim.is_dir() and not victim.is_symlink():
            shutil.rmtree(victim)
        elif victim.exists() or victim.is_symlink():
            victim.unlink()
    else:
        raise EngineError(f"local engine: Directory operation {op} is not modelled")
    return target


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise EngineError(f"local engine: {path.name!r} is a directory")
    path.write_bytes(data)
    path.chmod(mode)


async def file_path(session: Session, file: File) -> Path:
    """The file's bytes on the host; reading a path nothing wrote is the engine's error."""
    return await session.once(file, lambda: _build_file(session, file))


async def _build_file(session: Session, file: File) -> Path:
    from .rootfs import container_file, container_tarball

    if file.op == "inDirectory":
        root = await materialise(session, file.parent)
        path: Path = root / file.args[0]
        if not path.is_file():
            raise EngineError(f"local engine: {file.args[0]!r}: no such file or directory")
        return path
    target = session.scratch_path(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    if file.op == "inContainer":
        return await container_file(session, file.parent, file.args[0], target)
    if file.op == "tarball":
        return await container_tarball(session, file.parent, target)
    raise EngineError(f"local engine: File origin {file.op} is not modelled")
