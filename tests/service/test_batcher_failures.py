"""The dynamic batcher (service/batching.py) after failures, and the start of its wait for
company, on a virtual clock with a scripted executor (no model, no threads):

- when a merged run fails, each of its requests runs alone, so only the bad one fails; the
  worker it held is free again: later requests are served, merged as before, and never more
  runs at once than there are workers;
- a request waits at most MAX_BATCH_DELAY_MS for company, counted from the arrival of the
  oldest request in the batch, not of the latest one; a full batch does not wait."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import numpy as np
import pytest

from service.batching import Arrays, DynamicBatcher
from service.errors import BadRequest
from service.metrics import ServerMetrics
from service.runtime import InferenceExecutor, LoadedModel
from tests.service.virtual_clock import VirtualClockLoop

BAD = -1  # a row holding this value fails any run it is in (an index out of range)
PATIENCE_S = 600.0  # virtual seconds a test waits for an answer; never reached when it works
T = TypeVar("T")


class ScriptedExecutor:
    """Runs "y = x + 1" after `run_s` virtual seconds; a run with a BAD row fails. Records
    each run's start time and rows, and the most runs ever at once. `hold` keeps runs from
    finishing until it is set."""

    def __init__(self, run_s: float = 0.0) -> None:
        self.run_s = run_s
        self.hold = asyncio.Event()
        self.hold.set()
        self.runs: list[tuple[float, list[int]]] = []
        self.active = 0
        self.most_active = 0

    async def run(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        x = feeds["x"]
        self.runs.append((loop.time(), [int(v) for v in x[:, 0]]))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.run_s)
            await self.hold.wait()
        finally:
            self.active -= 1
        if (x == BAD).any():
            raise BadRequest("index out of range")
        return [x + 1]

    run_short_inline = run


MODEL = cast(LoadedModel, SimpleNamespace(name="lookup", outputs={"y": None}))


def batcher(
    executor: ScriptedExecutor, max_rows: int = 8, delay_s: float = 0.0, workers: int = 1
) -> DynamicBatcher:
    return DynamicBatcher(
        MODEL, cast(InferenceExecutor, executor), ServerMetrics(), max_rows, delay_s, workers
    )


def request(value: int) -> Arrays:
    return {"x": np.array([[value]], dtype=np.int64)}


def answer(result: Arrays) -> int:
    return int(result["y"][0, 0])


def on_virtual_clock(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(scenario())


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, PATIENCE_S)


async def merged_behind_a_held_run(
    runner: DynamicBatcher, executor: ScriptedExecutor, values: list[int]
) -> list[Arrays | BaseException]:
    """Hold a run of one request (value 100), queue `values` behind it, release."""
    executor.hold.clear()
    held = asyncio.create_task(runner.infer(request(100), ["y"]))
    while not executor.runs or executor.runs[-1][1] != [100]:
        await asyncio.sleep(0)
    tasks = [asyncio.create_task(runner.infer(request(value), ["y"])) for value in values]
    await asyncio.sleep(0)
    executor.hold.set()
    assert answer(await within(held)) == 101
    return list(await within(asyncio.gather(*tasks, return_exceptions=True)))


# ---- a failed merged run -------------------------------------------------------------------


def test_a_failed_merged_run_fails_only_the_bad_request_and_frees_its_worker() -> None:
    async def scenario() -> None:
        executor = ScriptedExecutor()
        runner = batcher(executor)
        try:
            good, bad, other = await merged_behind_a_held_run(runner, executor, [1, BAD, 2])
            assert isinstance(good, dict) and answer(good) == 2
            assert isinstance(bad, BadRequest)
            assert isinstance(other, dict) and answer(other) == 3
            # the merged run, then each request alone
            assert [rows for _, rows in executor.runs[1:]] == [[1, BAD, 2], [1], [BAD], [2]]

            # The worker is free: a lone request runs at once ...
            assert answer(await within(runner.infer(request(5), ["y"]))) == 6
            # ... and queued ones merge again, one run at a time.
            runs_before = len(executor.runs)
            later = await merged_behind_a_held_run(runner, executor, [7, 8])
            assert [answer(cast(Arrays, result)) for result in later] == [8, 9]
            assert [rows for _, rows in executor.runs[runs_before + 1 :]] == [[7, 8]]
            assert executor.most_active == 1
        finally:
            await runner.stop()

    on_virtual_clock(scenario)


def test_a_failed_lone_run_from_the_queue_frees_its_worker() -> None:
    async def scenario() -> None:
        executor = ScriptedExecutor()
        runner = batcher(executor)
        try:
            (bad,) = await merged_behind_a_held_run(runner, executor, [BAD])
            assert isinstance(bad, BadRequest)
            later = await merged_behind_a_held_run(runner, executor, [3, 4])
            assert [answer(cast(Arrays, result)) for result in later] == [4, 5]
            assert executor.most_active == 1
        finally:
            await runner.stop()

    on_virtual_clock(scenario)


def test_failed_merged_runs_never_let_more_runs_than_workers_at_once() -> None:
    """Two workers, MAX_BATCH_SIZE=3: nine requests a round make three merged runs, one of
    them failing; round after round, two runs at once and never more (the third waits), and
    every good request answered."""

    async def scenario() -> None:
        executor = ScriptedExecutor(run_s=0.05)
        runner = batcher(executor, max_rows=3, workers=2, delay_s=0.01)
        try:
            for round_ in range(5):
                values = [10 * round_ + i for i in range(1, 9)] + [BAD]
                results = await within(
                    asyncio.gather(
                        *(runner.infer(request(v), ["y"]) for v in values), return_exceptions=True
                    )
                )
                for value, result in zip(values, results, strict=True):
                    if value == BAD:
                        assert isinstance(result, BadRequest)
                    else:
                        assert isinstance(result, dict) and answer(result) == value + 1
            assert executor.most_active == 2
        finally:
            await runner.stop()

    on_virtual_clock(scenario)


# ---- how long a request waits for company ----------------------------------------------------


def test_the_wait_for_company_counts_from_the_oldest_request() -> None:
    """MAX_BATCH_DELAY_MS of 1 s: requests at 0 s and 0.6 s run together at 1 s (not at
    1.6 s); one at 1.5 s waits its own second, until 2.5 s."""

    async def scenario() -> list[tuple[float, list[int]]]:
        executor = ScriptedExecutor()
        runner = batcher(executor, delay_s=1.0)
        loop = asyncio.get_running_loop()
        try:
            first = asyncio.create_task(runner.infer(request(1), ["y"]))
            await asyncio.sleep(0.6)
            second = asyncio.create_task(runner.infer(request(2), ["y"]))
            await asyncio.sleep(1.5 - loop.time())
            third = asyncio.create_task(runner.infer(request(3), ["y"]))
            answers = await within(asyncio.gather(first, second, third))
            assert [answer(result) for result in answers] == [2, 3, 4]
        finally:
            await runner.stop()
        return executor.runs

    runs = on_virtual_clock(scenario)
    assert [rows for _, rows in runs] == [[1, 2], [3]]
    assert [when for when, _ in runs] == pytest.approx([1.0, 2.5])


def test_a_full_batch_runs_without_waiting_out_the_delay() -> None:
    """MAX_BATCH_SIZE=2, a 1 s delay: the second request fills the batch at 0.3 s."""

    async def scenario() -> list[tuple[float, list[int]]]:
        executor = ScriptedExecutor()
        runner = batcher(executor, max_rows=2, delay_s=1.0)
        try:
            first = asyncio.create_task(runner.infer(request(1), ["y"]))
            await asyncio.sleep(0.3)
            second = asyncio.create_task(runner.infer(request(2), ["y"]))
            await within(asyncio.gather(first, second))
        finally:
            await runner.stop()
        return executor.runs

    runs = on_virtual_clock(scenario)
    assert [rows for _, rows in runs] == [[1, 2]]
    assert [when for when, _ in runs] == pytest.approx([0.3])


def test_requests_that_waited_for_a_busy_worker_run_as_soon_as_it_is_free() -> None:
    """One worker busy for 3 s; requests queued meanwhile have waited longer than the 1 s
    delay when it frees, so they run at once, merged, at 3 s."""

    async def scenario() -> list[tuple[float, list[int]]]:
        executor = ScriptedExecutor(run_s=3.0)
        runner = batcher(executor, delay_s=1.0)
        try:
            first = asyncio.create_task(runner.infer(request(1), ["y"]))
            await asyncio.sleep(1.5)  # the first one runs from 1 s to 4 s
            queued = [asyncio.create_task(runner.infer(request(v), ["y"])) for v in (2, 3)]
            await within(asyncio.gather(first, *queued))
        finally:
            await runner.stop()
        return executor.runs

    runs = on_virtual_clock(scenario)
    assert [rows for _, rows in runs] == [[1], [2, 3]]
    assert [when for when, _ in runs] == pytest.approx([1.0, 4.0])
