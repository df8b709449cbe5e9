"""When the inference log's writer acts, measured on a virtual clock.

`InferenceLog` runs on an event loop whose clock jumps from timer to timer
(tests/service/virtual_clock.py) against a scripted database (scripted_database.py): every
connection attempt and write is stamped with the loop's time, so the documented waits are
checked exactly and cost no wall-clock time. docs/SERVER.md: the writer reconnects with
exponential backoff (0.5 s to 30 s); a lone row waits 100 ms for company in a batch of up to
1,000; on SIGTERM the queue is flushed for up to PREDICTION_LOG_FLUSH_TIMEOUT_S, what is left
counted as dropped (`shutdown`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import asyncpg
import pytest

from service.inference_log import InferenceLog
from service.metrics import ServerMetrics
from tests.service.scripted_database import (
    ScriptedDatabase,
    accounted,
    config,
    database,
    drops,
    now,
    queued,
    run_virtual,
    submit,
    until,
    written,
)

__all__ = ["database"]  # the scripted database fixture

BACKOFF = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # docs/SERVER.md: 0.5 s doubling to 30 s
CLOSING_RETRY_S = 0.2  # writer.py: during the shutdown flush, retries come this quickly
LINGER_S = 0.1  # docs/SERVER.md: a batch at most every 100 ms


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def lost_connection() -> ConnectionResetError:
    return ConnectionResetError(104, "Connection reset by peer")


def test_reconnect_backoff_doubles_from_half_a_second_to_30_s_and_restarts_after_a_write(
    database: ScriptedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[float], float, list[float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        database.accepting = False
        submit(log, "r0")
        log.start()
        await until(lambda: len(database.connects) > len(BACKOFF), "the database tried 9 times")
        down = gaps(database.connects)
        database.accepting = True
        await until(lambda: written(metrics) == 1, "the row written once the database is back")
        # Written: the next outage backs off from 0.5 s again. The connection breaks at the
        # next write, and the database is away again.
        database.accepting = False
        database.failures.append((lost_connection(), False))
        before = len(database.connects)
        submit(log, "r1")
        await until(lambda: len(database.connects) >= before + 4, "4 more attempts")
        lost_write = database.writes[-1].at
        again = database.connects[before:]
        database.accepting = True
        await until(lambda: written(metrics) == 2, "the second row written")
        await log.close()
        assert drops(metrics) == {}
        return down, again[0] - lost_write, gaps(again)

    with caplog.at_level(logging.INFO, logger="service.inference_log"):
        down, first_retry, again = run_virtual(scenario())
    assert down == pytest.approx(BACKOFF)
    assert first_retry == pytest.approx(0.0)  # a lost connection is reconnected at once
    assert again == pytest.approx(BACKOFF[:3])
    assert database.ids() == ["r0", "r1"]
    # One ERROR line per problem and outage (not one per attempt), and a line when it ends.
    lines = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert [line for line in lines if line[0] in ("ERROR", "WARNING")] == [
        ("ERROR", "inference log: cannot connect to writer@db.invalid:5432/log"),
        ("ERROR", "inference log: lost the database connection while writing"),
        ("ERROR", "inference log: cannot connect to writer@db.invalid:5432/log"),
    ]
    assert lines.count(("INFO", "inference log: writing again")) == 2


def test_a_batch_the_database_refuses_is_retried_after_the_backoff(
    database: ScriptedDatabase,
) -> None:
    """Refused (not for its data, not a lost connection): tried three times, 0.5 s then 1 s
    apart, then dropped (`write_error`); the writer goes on with the next rows."""
    refusal = asyncpg.InsufficientPrivilegeError("permission denied for table inference_log")
    database.failures.extend([(refusal, False)] * 3)

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        submit(log, "a0", "a1", "a2", "a3")
        log.start()
        await until(lambda: drops(metrics).get("write_error") == 4, "the batch dropped")
        submit(log, "b0")
        await until(lambda: written(metrics) == 1, "the next row written")
        await log.close()
        return metrics

    metrics = run_virtual(scenario())
    tries = database.writes[:3]
    assert [write.ids for write in tries] == [["a0", "a1", "a2", "a3"]] * 3
    assert gaps([write.at for write in tries]) == pytest.approx(BACKOFF[:2])
    assert database.writes[3].ids == ["b0"]
    assert drops(metrics) == {"write_error": 4} and accounted(metrics) == 5
    assert database.ids() == ["b0"]


def test_a_write_whose_answer_was_lost_is_retried_and_not_written_twice(
    database: ScriptedDatabase,
) -> None:
    """The COPY committed, then the connection broke before its answer arrived; and it
    broke three more times on the retries. A lost connection is no refusal: the batch is
    retried (not dropped as `write_error`), at once the first time (a restart), then with
    the backoff, and each row is written once."""
    database.failures.append((lost_connection(), True))
    database.failures.extend([(lost_connection(), False)] * 3)
    ids = [f"r{n}" for n in range(5)]

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        submit(log, *ids)
        log.start()
        await until(lambda: written(metrics) == 5, "the rows written")
        await log.close()
        return metrics

    metrics = run_virtual(scenario())
    first, *retries = database.writes
    assert (first.ids, first.retry) == (ids, False)
    assert [(retry.ids, retry.retry) for retry in retries] == [(ids, True)] * 4
    # Each retry waits for a connection first: 0 s, then 0.5, 1 and 2 s of backoff.
    waits = [retry.at - first.at for retry in retries]
    assert waits == pytest.approx([0.0, 0.5, 1.5, 3.5], abs=0.05)
    assert database.ids() == ids
    assert (written(metrics), drops(metrics), queued(metrics)) == (5, {}, 0)


def test_a_lone_row_waits_100_ms_for_company_in_batches_of_up_to_1000(
    database: ScriptedDatabase,
) -> None:
    async def scenario() -> list[float]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(queue_size=5000), metrics)
        log.start()
        await until(lambda: len(database.connects) == 1, "connected")
        await asyncio.sleep(1.0)  # idle
        first = now()
        submit(log, "a")
        await asyncio.sleep(LINGER_S / 2)
        submit(log, "b", "c")
        await until(lambda: written(metrics) == 3, "three rows written")
        submit(log, *(f"r{n}" for n in range(2500)))
        await until(lambda: written(metrics) == 2503, "every row written")
        await log.close()
        return [write.at - first for write in database.writes]

    starts = run_virtual(scenario())
    assert [len(write.ids) for write in database.writes] == [3, 1000, 1000, 500]
    assert starts[0] == pytest.approx(LINGER_S)


def test_the_shutdown_flush_wakes_the_writer_from_its_backoff_and_retries_quickly(
    database: ScriptedDatabase,
) -> None:
    """The writer sleeps a 30 s back-off when SIGTERM comes: the flush tries at once, then
    every 0.2 s, and ends as soon as the rows are written (before its 5 s are up)."""

    async def scenario() -> tuple[float, list[float], float, ServerMetrics]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(flush_timeout_s=5.0), metrics)
        database.accepting = False
        submit(log, "a", "b", "c")
        log.start()
        await until(lambda: len(database.connects) == 8, "backing off 30 s")
        await asyncio.sleep(1.0)
        closing = now()
        closer = asyncio.create_task(log.close())
        await until(lambda: len(database.connects) == 13, "5 attempts in the flush")
        database.accepting = True
        await closer
        flush = [at - closing for at in database.connects[8:]]
        return flush[0], gaps(flush), now() - closing, metrics

    first, spacing, took, metrics = run_virtual(scenario())
    assert first == pytest.approx(0.0)
    assert spacing == pytest.approx([CLOSING_RETRY_S] * len(spacing))
    assert took < 5.0
    assert (written(metrics), drops(metrics), queued(metrics)) == (3, {}, 0)
    assert database.ids() == ["a", "b", "c"]


def test_rows_still_unwritten_when_the_flush_times_out_are_counted_as_shutdown(
    database: ScriptedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch in hand (its COPY never answers) and rows queued behind it: close() gives up
    after PREDICTION_LOG_FLUSH_TIMEOUT_S and counts each of them once, as `shutdown`; rows
    that come after are `shutdown` drops too."""
    database.stall = asyncio.Event()  # never set

    async def scenario() -> tuple[float, ServerMetrics]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(flush_timeout_s=2.5), metrics)
        submit(log, *(f"a{n}" for n in range(7)))
        log.start()
        await database.writing.wait()  # the writer holds a batch of 7
        submit(log, "b0", "b1", "b2")
        closing = now()
        await log.close()
        took = now() - closing
        submit(log, "late")
        return took, metrics

    with caplog.at_level(logging.INFO, logger="service.inference_log"):
        took, metrics = run_virtual(scenario())
    assert took == pytest.approx(2.5)
    assert [len(write.ids) for write in database.writes] == [7]
    assert (written(metrics), drops(metrics), queued(metrics)) == (0, {"shutdown": 11}, 0)
    assert database.table == {}
    assert "stopped; 0 rows written, dropped {'shutdown': 10}" in caplog.text


@pytest.mark.parametrize(
    ("answer_lost", "behind"),
    [(False, 3), (True, 3), (True, 0)],
    ids=["answered", "answer-lost", "answer-lost-nothing-queued"],
)
def test_a_batch_in_hand_written_within_the_flush_timeout_is_kept(
    database: ScriptedDatabase, answer_lost: bool, behind: int
) -> None:
    """The batch the writer holds is written when its COPY completes during the flush, and
    the rows queued behind it after it; when the answer to that COPY is lost, the flush
    retries it: each row written once, counted once, nothing dropped."""
    database.stall = asyncio.Event()
    if answer_lost:
        database.failures.append((lost_connection(), True))
    first = [f"a{n}" for n in range(7)]
    queued_behind = [f"b{n}" for n in range(behind)]

    async def scenario() -> tuple[float, ServerMetrics]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(flush_timeout_s=5.0), metrics)
        submit(log, *first)
        log.start()
        await database.writing.wait()
        submit(log, *queued_behind)
        closing = now()
        closer = asyncio.create_task(log.close())
        await asyncio.sleep(1.0)
        assert not closer.done()
        assert database.stall is not None
        database.stall.set()
        await closer
        return now() - closing, metrics

    took, metrics = run_virtual(scenario())
    assert took == pytest.approx(1.0)
    assert (written(metrics), drops(metrics), queued(metrics)) == (7 + behind, {}, 0)
    assert database.ids() == first + queued_behind


def test_a_connection_that_breaks_at_every_write_is_retried_with_backoff(
    database: ScriptedDatabase,
) -> None:
    database.connect_latency = 0.01
    database.failing = lost_connection()

    async def scenario() -> int:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(flush_timeout_s=0.5), metrics)
        submit(log, "r0")
        log.start()
        await asyncio.sleep(10.0)
        attempts = len(database.connects)
        await log.close()
        return attempts

    # Backing off 0.5, 1, 2 and 4 s: five connections in 10 s; allow a few more.
    assert run_virtual(scenario()) <= 8
