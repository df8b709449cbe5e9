"""The inference log against a real PostgreSQL 15 that goes away and comes back, driven
directly (`InferenceLog`, real asyncpg, real time; waits poll with a deadline).

- The queue's byte budget (docs/LIMITS.md) is released as rows are written: once the database
  is back and the kept rows are in the table, a full budget of new rows is accepted again.
- A batch the writer holds when shutdown comes (its COPY waits on a lock) is written if the
  lock goes within PREDICTION_LOG_FLUSH_TIMEOUT_S; otherwise each of its rows, and each row
  queued behind it, is counted once as `shutdown`, and none of them reaches the table.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from service.inference_log import InferenceLog, LogConfig
from service.inference_log.entries import row_cost
from service.metrics import ServerMetrics
from tests.service.postgres import PostgresCluster
from tests.service.scripted_database import accounted, drops, queued, sample, submit, until
from tests.service.scripted_database import written as written_rows
from tests.service.test_inference_log import cluster, own_cluster

__all__ = ["cluster", "own_cluster"]  # PostgreSQL fixtures shared with the log's tests

WAIT_S = 90.0  # reconnect backoff tops out at 30 s
APPLICATION = "onnx-serving inference log"  # the writer's application_name


def row_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:03d}" for n in range(count)]  # one length: one cost per row


def connected(metrics: ServerMetrics) -> bool:
    return sample(metrics, "prediction_log_connected") == 1


def test_the_byte_budget_is_free_again_once_the_database_is_back(
    own_cluster: PostgresCluster,
) -> None:
    url = own_cluster.url(own_cluster.create_database())
    probe = InferenceLog(None, ServerMetrics(["m"])).entry("m", time.time())
    probe.request_id = row_ids("a", 1)[0]
    cost = row_cost(probe.finish("1", 200, None, 0.001))
    # The byte budget, not the row cap, is what holds 20 rows.
    settings = LogConfig(url, None, False, 1_000_000, 30.0, queue_bytes=20 * cost + cost // 2)

    async def scenario() -> list[tuple[float, dict[str, float], float]]:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(settings, metrics)
        log.start()
        await until(lambda: connected(metrics), "connected", WAIT_S)
        await asyncio.to_thread(own_cluster.stop)
        submit(log, *row_ids("a", 50))
        seen = [(written_rows(metrics), drops(metrics), queued(metrics))]
        await asyncio.to_thread(own_cluster.start)
        await until(lambda: written_rows(metrics) == 20, "the kept rows written", WAIT_S)
        seen.append((written_rows(metrics), drops(metrics), queued(metrics)))
        submit(log, *row_ids("b", 20))
        seen.append((written_rows(metrics), drops(metrics), queued(metrics)))
        await until(lambda: written_rows(metrics) == 40, "the new rows written", WAIT_S)
        await log.close()
        return seen

    down, back, refilled = asyncio.run(scenario())
    assert down == (0, {"queue_full": 30}, 20)
    assert back == (20, {"queue_full": 30}, 0)
    assert refilled == (20, {"queue_full": 30}, 20)  # every new row taken
    rows = own_cluster.query(url, "SELECT request_id FROM inference_log ORDER BY seq")
    assert [row["request_id"] for row in rows] == row_ids("a", 20) + row_ids("b", 20)


@pytest.mark.parametrize(
    ("flush_timeout_s", "unlock_during_flush"),
    [(30.0, True), (0.5, False)],
    ids=["unlocked-within-the-flush", "locked-past-the-flush"],
)
def test_a_batch_in_hand_at_shutdown_is_written_in_time_or_counted_as_shutdown(
    cluster: PostgresCluster, flush_timeout_s: float, unlock_during_flush: bool
) -> None:
    url = cluster.url(cluster.create_database())
    settings = LogConfig(url, None, False, 1000, flush_timeout_s)
    first, behind = row_ids("a", 7), row_ids("b", 3)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND wait_event_type = 'Lock'"
    )

    async def scenario() -> ServerMetrics:
        metrics = ServerMetrics(["m"])
        log = InferenceLog(settings, metrics)
        log.start()
        await until(lambda: connected(metrics), "connected", WAIT_S)
        holder = await asyncpg.connect(url)
        try:
            lock = holder.transaction()
            await lock.start()
            await holder.execute("LOCK TABLE inference_log IN ACCESS EXCLUSIVE MODE")
            submit(log, *first)
            deadline = time.monotonic() + WAIT_S
            while not await holder.fetchval(waiting, APPLICATION):  # the COPY of the 7 waits
                assert time.monotonic() < deadline, "the writer's COPY never waited on the lock"
                await asyncio.sleep(0.02)
            submit(log, *behind)
            closer = asyncio.create_task(log.close())
            if unlock_during_flush:
                await asyncio.sleep(0.3)
                assert not closer.done()
                await lock.rollback()
                await closer
            else:
                await closer
                await lock.rollback()
            # The writer's session is gone before the table is read.
            while await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION
            ):
                assert time.monotonic() < deadline, "the writer's session outlived close()"
                await asyncio.sleep(0.02)
        finally:
            await holder.close()
        return metrics

    metrics = asyncio.run(scenario())
    rows = cluster.query(url, "SELECT request_id FROM inference_log ORDER BY seq")
    assert (accounted(metrics), queued(metrics)) == (10, 0)
    if unlock_during_flush:
        assert (written_rows(metrics), drops(metrics)) == (10, {})
        assert [row["request_id"] for row in rows] == first + behind
    else:
        assert (written_rows(metrics), drops(metrics)) == (0, {"shutdown": 10})
        assert rows == []
