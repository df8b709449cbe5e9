"""One engine session: the objects handed out, what has been evaluated, and where it lives."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .docker import Docker
from .store import EngineObject, Store, digest

T = TypeVar("T")


class Session:
    """Evaluation is memoised by definition: an object evaluated twice in one session (the
    same image smoke-tested and scanned) runs once, as the engine dedupes identical
    operations. Nothing is cached across sessions: every run starts cold."""

    def __init__(self, state_dir: Path, caches_dir: Path) -> None:
        self.store = Store()
        self.state_dir = state_dir
        self.caches_dir = caches_dir  # cache volumes outlive a session, as in the engine
        self.docker = Docker(config_dir=str(state_dir / "docker-config"))
        self.secrets: dict[str, bytes] = {}
        self._evaluations: dict[str, asyncio.Task[Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.stops: dict[str, Callable[[], Awaitable[None]]] = {}  # running services
        self.results: set[str] = set()  # images the CLI hands to the user
        self.pushed: dict[str, str] = {}  # repository and images -> the digest pushed
        self.finalised: dict[str, asyncio.Task[str]] = {}  # a state's image, made once

    @classmethod
    def create(cls, caches_dir: Path) -> Session:
        return cls(Path(tempfile.mkdtemp(prefix="local-engine-")), caches_dir)

    async def once(self, obj: EngineObject, evaluate: Callable[[], Awaitable[T]]) -> T:
        """`evaluate()` for this definition, run at most once; a failure is remembered too."""
        key = digest(obj)
        task = self._evaluations.get(key)
        if task is None:
            task = asyncio.ensure_future(evaluate())
            self._evaluations[key] = task
        result: T = await asyncio.shield(task)
        return result

    def scratch_path(self, obj: EngineObject, suffix: str = "") -> Path:
        return self.state_dir / "objects" / f"{digest(obj)}{suffix}"

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())

    async def close(self) -> None:
        """Stop what still runs, and remove this session's images but its results: the
        engine's cache is not modelled, so nothing would reuse them."""
        for cleanup in reversed(self.cleanups):
            await cleanup()
        for image in reversed(self.docker.committed):
            if image not in self.results:
                await self.docker.run(["image", "rm", image], check=False)
        shutil.rmtree(self.state_dir, ignore_errors=True)
