"""The inference log's queue is bounded in bytes: each row is charged what it holds.

A PostgreSQL stopped with SIGSTOP takes the writer's connection and never answers. Rows
carrying 8 MiB request ids, and rows for unknown models with 60 kB names, are cut before they
are queued and charged against the queue's byte budget; past it they are dropped and counted
(`queue_full`), so the memory they hold stays within the budget even with a row cap far above
it. Once PostgreSQL runs again every kept row is written.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest

from service.inference_log import TEXT_LIMIT, InferenceLog, LogConfig
from service.metrics import ServerMetrics
from service.tensors import TensorSpec
from tests.service.postgres import PostgresCluster
from tests.service.test_inference_log import own_cluster

__all__ = ["own_cluster"]  # a PostgreSQL this test may stop, shared with the log's tests

BUDGET = 2 << 20  # small, so that a few hundred rows reach it
ROWS = 3000  # at TEXT_LIMIT each, several times the budget
SLACK = 1 << 20  # the event loop's and asyncpg's own allocations meanwhile


def metric(metrics: ServerMetrics, name: str, labels: str = "") -> float:
    text = metrics.render()[0].decode()
    selector = r"\{" + re.escape(labels) + r"\}" if labels else ""
    match = re.search(f"^{re.escape(name)}{selector} (\\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def cluster_processes(cluster: PostgresCluster) -> list[int]:
    """The postmaster and its children (the backend holding the writer's connection)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


@pytest.fixture
def stalled(own_cluster: PostgresCluster) -> Iterator[tuple[PostgresCluster, list[int]]]:
    """The cluster, and a list that the test fills with the pids it stopped (resumed after)."""
    stopped: list[int] = []
    try:
        yield own_cluster, stopped
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_big_ids_and_unknown_models_stay_within_the_byte_budget(
    stalled: tuple[PostgresCluster, list[int]],
) -> None:
    cluster, stopped = stalled
    url = cluster.url(cluster.create_database())
    huge_id = "i" * (8 << 20)
    huge_name = "n" * 60_000
    spec = {"x": TensorSpec("x", "FP32", (-1,))}
    tensor = {"x": np.zeros(1, np.float32)}

    async def scenario() -> dict[str, float]:
        metrics = ServerMetrics(["m"])
        config = LogConfig(url, None, False, 1_000_000, 30.0, queue_bytes=BUDGET)
        inference_log = InferenceLog(config, metrics)
        inference_log.start()
        deadline = time.monotonic() + 60
        while metric(metrics, "prediction_log_connected") != 1:
            assert time.monotonic() < deadline, "never connected"
            await asyncio.sleep(0.05)
        processes = cluster_processes(cluster)
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(ROWS):
            if n % 2:  # a served model, an 8 MiB id
                entry = inference_log.entry("m", time.time())
                await entry.add_inputs(huge_id, tensor, spec)
                inference_log.submit(entry.finish("1", 200, None, 0.001))
            else:  # an unknown model: its name in the row and in the 404's text
                entry = inference_log.entry(huge_name, time.time())
                error = f"unknown model '{huge_name}'"
                inference_log.submit(entry.finish(None, 404, error, 0.001))
            if n % 100 == 0:
                await asyncio.sleep(0.01)  # the writer takes batches meanwhile
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        seen = {
            "grown": grown,
            "queued": metric(metrics, "prediction_log_queued"),
            "full": metric(metrics, "prediction_log_dropped_total", 'reason="queue_full"'),
            "written_while_stopped": metric(metrics, "prediction_log_written_total"),
        }
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
        await inference_log.close()
        seen["written"] = metric(metrics, "prediction_log_written_total")
        seen["dropped"] = sum(
            metric(metrics, "prediction_log_dropped_total", f'reason="{reason}"')
            for reason in ("queue_full", "write_error", "shutdown", "misconfigured", "refused")
        )
        return seen

    tracemalloc.start()
    try:
        seen = asyncio.run(scenario())
    finally:
        tracemalloc.stop()
    assert seen["written_while_stopped"] == 0
    assert 0 < seen["queued"] < ROWS and seen["full"] > 0
    assert seen["queued"] + seen["full"] == ROWS
    assert seen["grown"] <= BUDGET + SLACK, seen
    assert seen["written"] == seen["queued"] and seen["dropped"] == seen["full"], seen
    rows = cluster.query(url, "SELECT request_id, model, error FROM inference_log")
    assert len(rows) == seen["written"]
    longest = max(len(row[column] or "") for row in rows for column in row)
    assert longest == TEXT_LIMIT
