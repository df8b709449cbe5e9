"""Every row the inference log does not write is counted once, under its reason, and the room
it held in the queue is free again once it is written or dropped.

`InferenceLog` against a scripted database on a virtual clock (scripted_database.py). The
reasons (docs/SERVER.md, `prediction_log_dropped_total{reason}`): `queue_full` (the queue's
row cap or byte budget is reached), `write_error` (the database rejected a batch three times),
`refused` (the database refused that row's data; its batch is written without it), `shutdown`
(test_inference_log_timing.py) and `misconfigured`. docs/LIMITS.md: a row's cost is charged
when it is queued and released when it is written or dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest

import service.inference_log.writer as writer_module
from service.inference_log import InferenceLog
from service.inference_log.entries import row_cost
from service.metrics import ServerMetrics
from tests.service.scripted_database import (
    ScriptedDatabase,
    accounted,
    config,
    database,
    drops,
    queued,
    run_virtual,
    submit,
    until,
    written,
)

__all__ = ["database"]  # the scripted database fixture


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:03d}" for n in range(count)]  # one length: one cost per row


def cost_of_a_row() -> int:
    entry = InferenceLog(None, ServerMetrics(["m"])).entry("m", time.time())
    entry.request_id = ids("a", 1)[0]
    return row_cost(entry.finish("1", 200, None, 0.001))


@pytest.mark.parametrize("cap", ["rows", "bytes"])
def test_rows_past_the_queue_are_queue_full_and_its_room_is_free_again_once_written(
    database: ScriptedDatabase, cap: str
) -> None:
    """The database is down: four rows fit (PREDICTION_LOG_QUEUE_SIZE, or the byte budget),
    the other six are `queue_full`. Once the four are written the queue holds nothing and
    takes four rows again."""
    if cap == "rows":
        settings = config(queue_size=4)
    else:
        settings = config(queue_size=1000, queue_bytes=4 * cost_of_a_row())  # at most: 4 fit

    async def scenario() -> list[tuple[float, dict[str, float], float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(settings, metrics)
        database.accepting = False
        log.start()
        await until(lambda: len(database.connects) == 1, "a failed connection")
        submit(log, *ids("a", 10))
        seen = [(written(metrics), drops(metrics), queued(metrics))]
        database.accepting = True
        await until(lambda: written(metrics) == 4, "the kept rows written")
        seen.append((written(metrics), drops(metrics), queued(metrics)))
        submit(log, *ids("b", 4))
        seen.append((written(metrics), drops(metrics), queued(metrics)))
        await until(lambda: written(metrics) == 8, "the new rows written")
        await log.close()
        seen.append((written(metrics), drops(metrics), queued(metrics)))
        return seen

    down, back, refilled, closed = run_virtual(scenario())
    assert down == (0, {"queue_full": 6}, 4)
    assert back == (4, {"queue_full": 6}, 0)
    assert refilled == (4, {"queue_full": 6}, 4)
    assert closed == (8, {"queue_full": 6}, 0)
    assert database.ids() == ids("a", 4) + ids("b", 4)


def test_a_batch_rejected_three_times_is_write_error_and_frees_its_room(
    database: ScriptedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    refusal = asyncpg.InsufficientPrivilegeError("permission denied for table inference_log")
    database.failures.extend([(refusal, False)] * 3)

    async def scenario() -> list[tuple[float, dict[str, float], float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(queue_size=5), metrics)
        submit(log, *ids("a", 5))
        log.start()
        await until(lambda: bool(drops(metrics)), "a drop")
        seen = [(written(metrics), drops(metrics), queued(metrics))]
        submit(log, *ids("b", 5))
        await until(lambda: written(metrics) == 5, "the next rows written")
        await log.close()
        seen.append((written(metrics), drops(metrics), queued(metrics)))
        return seen

    with caplog.at_level(logging.INFO, logger="service.inference_log"):
        dropped, after = run_virtual(scenario())
    assert dropped == (0, {"write_error": 5}, 0)
    assert after == (5, {"write_error": 5}, 0)
    assert database.ids() == ids("b", 5)
    assert "5 rows dropped (write_error)" in caplog.text


def test_refused_rows_are_counted_alone_and_free_their_room(database: ScriptedDatabase) -> None:
    sent = ids("a", 10)
    database.refused_ids = {sent[2], sent[7]}

    async def scenario() -> list[tuple[float, dict[str, float], float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(queue_size=10), metrics)
        submit(log, *sent)
        log.start()
        await until(lambda: accounted(metrics) - queued(metrics) == 10, "every row handled")
        seen = [(written(metrics), drops(metrics), queued(metrics))]
        submit(log, *ids("b", 10))
        await until(lambda: written(metrics) == 18, "the next rows written")
        await log.close()
        seen.append((written(metrics), drops(metrics), queued(metrics)))
        return seen

    first, after = run_virtual(scenario())
    assert first == (8, {"refused": 2}, 0)
    assert after == (18, {"refused": 2}, 0)
    kept = [request_id for request_id in sent if request_id not in database.refused_ids]
    assert database.ids() == kept + ids("b", 10)
    assert len(database.connects) == 1  # a refused row costs no reconnection


def test_a_log_that_cannot_start_counts_every_row_as_misconfigured() -> None:
    metrics = ServerMetrics(["m"])
    log = InferenceLog(None, metrics, "PREDICTION_LOG_URL='x' is not a postgresql URL")
    submit(log, *ids("a", 3))
    assert (written(metrics), drops(metrics), queued(metrics)) == (0, {"misconfigured": 3}, 0)


def test_a_url_the_driver_rejects_drops_what_was_queued_as_misconfigured(
    database: ScriptedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg's own URL checks fail at the first connection: one ERROR line, the rows
    already queued and every later one are `misconfigured`, and no connection is retried."""
    database.accepting = False
    database.connect_error = ValueError("invalid sslmode: 'sometimes'")

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        submit(log, *ids("a", 4))
        log.start()
        await until(lambda: bool(drops(metrics)), "a drop")
        submit(log, *ids("b", 2))
        await asyncio.sleep(60.0)  # no further connection attempt
        await log.close()
        return metrics

    with caplog.at_level(logging.INFO, logger="service.inference_log"):
        metrics = run_virtual(scenario())
    assert (written(metrics), drops(metrics), queued(metrics)) == (0, {"misconfigured": 6}, 0)
    assert len(database.connects) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "sometimes" in errors[0].getMessage()


def test_a_failed_writer_counts_what_it_held_as_write_error(
    database: ScriptedDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the writer stops logging, loudly: the rows it held are `write_error`, and
    later rows are dropped and counted, not queued without end."""

    def broken(*args: object) -> list[tuple[object, ...]]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(writer_module, "table_rows", broken)

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(config(), metrics)
        submit(log, *ids("a", 3))
        log.start()
        await until(lambda: bool(drops(metrics)), "a drop")
        assert drops(metrics) == {"write_error": 3} and queued(metrics) == 0
        submit(log, "late")
        await log.close()
        return metrics

    with caplog.at_level(logging.INFO, logger="service.inference_log"):
        metrics = run_virtual(scenario())
    assert drops(metrics)["write_error"] == 3
    assert (written(metrics), queued(metrics), accounted(metrics)) == (0, 0, 4)
    assert "writer failed" in caplog.text
