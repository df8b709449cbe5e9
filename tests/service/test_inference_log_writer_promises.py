"""The inference log writer's remaining promises (service/inference_log/writer.py), on a
virtual clock against a scripted database (scripted_database.py):

- a write that hangs is given up after WRITE_TIMEOUT_S (10 s) and retried on a new
  connection; connecting is bounded by CONNECT_TIMEOUT_S (10 s), statements by the write
  timeout;
- a batch holds up to 1,000 rows; full batches go out back to back, only a partial batch
  waits LINGER_S (100 ms) for company;
- if the writer itself fails (a bug), the rows it held are counted as `write_error`, and every
  later row is dropped at once, counted as `misconfigured` (the log is off), never queued;
- one ERROR line per kind of refused row, for at most 10 kinds; the rest at DEBUG;
- a schema newer than the server's is used, with an INFO line saying so;
- a database whose migration fails is retried with the connection backoff (0.5 s doubling),
  each failed connection closed, one ERROR line naming the migration."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

import service.inference_log.writer as writer_module
from service.inference_log import SCHEMA_VERSION, InferenceLog
from service.metrics import ServerMetrics
from tests.service.scripted_database import (
    ID,
    FakeConnection,
    ScriptedDatabase,
    accounted,
    config,
    database,
    drops,
    now,
    run_virtual,
    submit,
    until,
    written,
)

__all__ = ["database"]  # the scripted database fixture

WRITE_TIMEOUT_S = 10.0  # writer.py
CONNECT_TIMEOUT_S = 10.0
LINGER_S = 0.1
BATCH_ROWS = 1000


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_hanging_write_is_given_up_after_the_write_timeout(database: ScriptedDatabase) -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        database.stall = asyncio.Event()  # the first write never returns by itself
        submit(log, "r0")
        log.start()
        await until(lambda: len(database.writes) == 1, "the first write began")
        await until(lambda: len(database.connects) == 2, "a new connection after the timeout")
        database.stall.set()
        await until(lambda: written(metrics) == 1, "the row written")
        await log.close()
        return [write.at for write in database.writes], database.connects

    writes, connects = run_virtual(scenario())
    # Connected at 0, the lone row waited 0.1 s, the write hung for 10 s: reconnect at once.
    assert connects == pytest.approx([0.0, LINGER_S + WRITE_TIMEOUT_S])
    assert writes[:2] == pytest.approx([LINGER_S, LINGER_S + WRITE_TIMEOUT_S])


def test_connecting_and_statements_are_bounded(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: list[dict[str, Any]] = []

    async def recording_connect(url: str, **given: Any) -> FakeConnection:
        options.append(given)
        return await database.connect(url, **given)

    monkeypatch.setattr(asyncpg, "connect", recording_connect)

    async def scenario() -> None:
        log = InferenceLog(config(), ServerMetrics(["m"]))
        log.start()
        await until(lambda: bool(options), "a connection attempt")
        await log.close()

    run_virtual(scenario())
    assert options[0]["timeout"] == CONNECT_TIMEOUT_S
    assert options[0]["command_timeout"] == WRITE_TIMEOUT_S


def test_full_batches_go_out_back_to_back_a_partial_one_lingers(
    database: ScriptedDatabase,
) -> None:
    async def scenario() -> list[tuple[float, int]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(queue_size=5000), metrics)
        log.start()
        await until(lambda: len(database.connects) == 1, "connected")
        await asyncio.sleep(1.0)
        sent = now()
        submit(log, *(f"r{n}" for n in range(2 * BATCH_ROWS + 500)))
        await until(lambda: written(metrics) == 2 * BATCH_ROWS + 500, "every row written")
        await log.close()
        return [(write.at - sent, len(write.ids)) for write in database.writes]

    writes = run_virtual(scenario())
    assert [rows for _, rows in writes] == [BATCH_ROWS, BATCH_ROWS, 500]
    assert [at for at, _ in writes] == pytest.approx([0.0, 0.0, LINGER_S])


def test_after_the_writer_fails_rows_are_counted_not_kept(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the writer (here: building the rows raises) stops it: the rows it held are
    dropped as `write_error`, later ones as `misconfigured`; serving goes on."""

    def broken(*args: Any) -> list[tuple[Any, ...]]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(writer_module, "table_rows", broken)

    async def scenario() -> tuple[dict[str, float], dict[str, float], float]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        log.start()
        submit(log, "a0", "a1", "a2")
        await until(lambda: bool(drops(metrics)), "the held rows counted")
        first = drops(metrics)
        submit(log, "b0", "b1")
        later = drops(metrics)
        await log.close()
        return first, later, accounted(metrics)

    first, later, total = run_virtual(scenario())
    assert first == {"write_error": 3}
    assert later == {"write_error": 3, "misconfigured": 2}
    assert total == 5  # each row counted once
    assert "inference log: writer failed; no further rows are written" in messages(
        caplog, logging.ERROR
    )


def test_refused_rows_are_logged_once_per_kind_for_at_most_10_kinds(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve rows refused for twelve different reasons, two of them twice: ten ERROR lines,
    the other refusals at DEBUG; every refused row counted."""
    caplog.set_level(logging.DEBUG, "service.inference_log")

    async def refusing(
        connection: FakeConnection | None, rows: Sequence[tuple[Any, ...]], retry: bool
    ) -> None:
        kinds = {row[ID] for row in rows if str(row[ID]).startswith("bad")}
        if kinds:
            kind = sorted(kinds)[0].split("-")[1]
            raise asyncpg.NumericValueOutOfRangeError(f"value {kind} out of range")
        await database.write_rows(connection, rows, retry)

    monkeypatch.setattr(writer_module, "write_rows", refusing)
    ids = [f"bad-{kind:02d}-{n}" for kind in range(12) for n in range(2 if kind < 2 else 1)]

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        log.start()
        submit(log, "good-0", *ids, "good-1")
        await until(lambda: drops(metrics).get("refused") == len(ids), "every bad row refused")
        await until(lambda: written(metrics) == 2, "the good rows written")
        await log.close()
        return metrics

    run_virtual(scenario())
    refused = [m for m in messages(caplog, logging.ERROR) if "refused a row" in m]
    assert len(refused) == 10
    assert len({m.split("(")[1].split(")")[0] for m in refused}) == 10  # ten different kinds
    quiet = [m for m in messages(caplog, logging.DEBUG) if "refused a row" in m]
    assert len(quiet) == len(ids) - 10
    assert sorted(database.ids()) == ["good-0", "good-1"]


def test_a_newer_schema_is_used_and_said_so(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "service.inference_log")

    async def newer(connection: FakeConnection) -> int:
        return SCHEMA_VERSION + 1

    monkeypatch.setattr(writer_module, "migrate", newer)

    async def scenario() -> float:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        log.start()
        submit(log, "r0")
        await until(lambda: written(metrics) == 1, "the row written")
        await log.close()
        return written(metrics)

    assert run_virtual(scenario()) == 1
    assert (
        f"inference log: the schema is newer than this server's ({SCHEMA_VERSION}); "
        "writing the columns it knows"
    ) in messages(caplog, logging.INFO)


def test_a_schema_version_the_server_knows_gets_no_such_line(
    database: ScriptedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "service.inference_log")

    async def scenario() -> None:
        log = InferenceLog(config(), ServerMetrics(["m"]))
        log.start()
        await until(lambda: bool(database.connects), "connected")
        await asyncio.sleep(1.0)
        await log.close()

    run_virtual(scenario())
    assert not [m for m in messages(caplog, logging.INFO) if "newer" in m]


def test_a_failed_migration_is_retried_with_backoff(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    terminated: list[FakeConnection] = []
    made: list[FakeConnection] = []

    async def connect(url: str, **options: Any) -> FakeConnection:
        connection = await database.connect(url, **options)
        made.append(connection)
        return connection

    async def failing(connection: FakeConnection) -> int:
        if len(made) <= 4:
            terminated.append(connection)
            raise asyncpg.InsufficientPrivilegeError("permission denied for schema public")
        return SCHEMA_VERSION

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(writer_module, "migrate", failing)

    async def scenario() -> float:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        submit(log, "r0")
        log.start()
        await until(lambda: written(metrics) == 1, "the row written once migrated")
        await log.close()
        return written(metrics)

    assert run_virtual(scenario()) == 1
    assert gaps(database.connects) == pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert all(connection.closed for connection in terminated)
    lines = [m for m in messages(caplog, logging.ERROR) if "migrate" in m]
    assert len(lines) == 1
    assert "cannot create or migrate inference_log in" in lines[0]
    assert "InsufficientPrivilegeError: permission denied for schema public" in lines[0]
