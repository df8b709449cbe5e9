"""A scripted PostgreSQL for driving `InferenceLog` directly, on a virtual clock.

What the writer sees of the database (``asyncpg.connect``, ``migrate``, ``write_rows``) is
replaced by a script the test controls: refuse connections, fail the next writes (before or
after committing), refuse rows by request id, hold writes until released. It keeps the table
as PostgreSQL would: a fresh COPY of a key already there is a unique violation, a retry adds
only the missing rows. Every call is stamped with the loop's (virtual) time, so tests can
measure back-off and retry waits exactly (tests/service/virtual_clock.py).
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import pytest

import service.inference_log.writer as writer_module
from service.inference_log import COLUMNS, SCHEMA_VERSION, InferenceLog, LogConfig
from service.metrics import DROP_REASONS, ServerMetrics
from tests.service.virtual_clock import VirtualClockLoop

URL = "postgresql://writer@db.invalid:5432/log"
ID = COLUMNS.index("request_id")
T = TypeVar("T")


def run_virtual(scenario: Coroutine[Any, Any, T]) -> T:
    """Run a scenario on the virtual clock (loop.time() starts at 0)."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(scenario)


def now() -> float:
    return asyncio.get_running_loop().time()


async def until(check: Callable[[], bool], what: str, within: float = 300.0) -> None:
    """Poll `check` every 10 ms of virtual time, for at most `within` virtual seconds."""
    deadline = now() + within
    while not check():
        assert now() < deadline, f"never (in {within} virtual s): {what}"
        await asyncio.sleep(0.01)


def config(
    queue_size: int = 1000, flush_timeout_s: float = 5.0, queue_bytes: int = 1 << 26
) -> LogConfig:
    return LogConfig(URL, None, False, queue_size, flush_timeout_s, queue_bytes=queue_bytes)


def submit(log: InferenceLog, *request_ids: str) -> None:
    """One finished request per id, as the infer handler hands them over."""
    for request_id in request_ids:
        entry = log.entry("m", time.time())
        entry.request_id = request_id
        log.submit(entry.finish("1", 200, None, 0.001))


def sample(metrics: ServerMetrics, name: str, labels: str = "") -> float:
    """One sample of /metrics as the server renders it (0 when absent)."""
    text = metrics.render()[0].decode()
    selector = r"\{" + re.escape(labels) + r"\}" if labels else ""
    match = re.search(f"^{re.escape(name)}{selector} (\\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def written(metrics: ServerMetrics) -> float:
    return sample(metrics, "prediction_log_written_total")


def queued(metrics: ServerMetrics) -> float:
    return sample(metrics, "prediction_log_queued")


def drops(metrics: ServerMetrics) -> dict[str, float]:
    """prediction_log_dropped_total by reason, the reasons with rows only."""
    counts = {
        reason: sample(metrics, "prediction_log_dropped_total", f'reason="{reason}"')
        for reason in DROP_REASONS
    }
    return {reason: rows for reason, rows in counts.items() if rows}


def accounted(metrics: ServerMetrics) -> float:
    """Every row submitted is written, dropped (once, for one reason) or still queued."""
    return written(metrics) + sum(drops(metrics).values()) + queued(metrics)


@dataclass
class Write:
    at: float  # virtual time the write began
    ids: list[str]
    retry: bool


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return False

    def terminate(self) -> None:
        self.closed = True


@dataclass
class ScriptedDatabase:
    accepting: bool = True  # connections succeed
    connect_error: BaseException = field(
        default_factory=lambda: ConnectionRefusedError(111, "Connect call failed")
    )
    connect_latency: float = 0.0  # virtual seconds a connection attempt takes
    connects: list[float] = field(default_factory=list)  # when each attempt began
    writes: list[Write] = field(default_factory=list)
    # Raised by the next writes in turn; True: the rows were committed first (a lost ack).
    failures: deque[tuple[BaseException, bool]] = field(default_factory=deque)
    failing: BaseException | None = None  # then every further write raises this
    refused_ids: set[str] = field(default_factory=set)  # rows refused for their data
    stall: asyncio.Event | None = None  # set: writes wait for it
    writing: asyncio.Event = field(default_factory=asyncio.Event)  # a write has begun
    table: dict[tuple[Any, int], tuple[Any, ...]] = field(default_factory=dict)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(asyncpg, "connect", self.connect)
        monkeypatch.setattr(writer_module, "migrate", self.migrate)
        monkeypatch.setattr(writer_module, "write_rows", self.write_rows)

    async def connect(self, url: str, **options: Any) -> FakeConnection:
        self.connects.append(now())
        await asyncio.sleep(self.connect_latency)
        if not self.accepting:
            raise copy.copy(self.connect_error)
        return FakeConnection()

    async def migrate(self, connection: FakeConnection) -> int:
        return SCHEMA_VERSION

    async def write_rows(
        self, connection: FakeConnection | None, rows: Sequence[tuple[Any, ...]], retry: bool
    ) -> None:
        assert connection is not None and not connection.is_closed()
        self.writes.append(Write(now(), [row[ID] for row in rows], retry))
        self.writing.set()
        await asyncio.sleep(0)
        if self.stall is not None:
            await self.stall.wait()
        if self.failures:
            error, committed = self.failures.popleft()
            if committed:
                self._commit(rows, retry)
            raise error
        if self.failing is not None:
            raise copy.copy(self.failing)  # a fresh one each time
        if any(row[ID] in self.refused_ids for row in rows):
            raise asyncpg.NumericValueOutOfRangeError("integer out of range")
        self._commit(rows, retry)

    def _commit(self, rows: Sequence[tuple[Any, ...]], retry: bool) -> None:
        keys = [(row[0], row[1]) for row in rows]
        if not retry and any(key in self.table for key in keys):
            raise asyncpg.UniqueViolationError("duplicate key value violates unique constraint")
        for key, row in zip(keys, rows, strict=True):
            self.table.setdefault(key, row)

    def ids(self) -> list[str]:
        """The request ids in the table, in seq order."""
        return [self.table[key][ID] for key in sorted(self.table, key=lambda key: key[1])]


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> ScriptedDatabase:
    scripted = ScriptedDatabase()
    scripted.install(monkeypatch)
    return scripted
