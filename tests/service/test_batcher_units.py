"""The dynamic batcher in process, with the real identity model and thread pool: requests are
queued in a known order behind a held run, so which ones merge is deterministic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.batching import Arrays, DynamicBatcher, _merge_key, rows_of
from service.errors import Unavailable
from service.metrics import ServerMetrics
from service.repository import ModelSource
from service.runtime import CPU, InferenceExecutor, LoadedModel, load_model
from tests.service.model_factory import ONNX_TYPES, sample_arrays

OUTPUTS = [f"out_{datatype}" for datatype in ONNX_TYPES]


class HeldExecutor(InferenceExecutor):
    """The real inference thread pool; runs wait until `opened`, and each run's rows are
    recorded, so a test can queue requests while the only worker is busy."""

    def __init__(self) -> None:
        super().__init__(1)
        self.started = asyncio.Event()
        self.opened = asyncio.Event()
        self.rows: list[int] = []

    async def run(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> list[np.ndarray]:
        self.started.set()
        await self.opened.wait()
        self.rows.append(rows_of(feeds))
        return await super().run(model, feeds, output_names)

    run_short_inline = run  # held too, and always on the thread


@pytest.fixture(scope="module")
def identity(model_repository: Path) -> LoadedModel:
    source = ModelSource("identity", "1", model_repository / "identity" / "1" / "model.onnx")
    return load_model(source, [CPU], 1)


def feeds(rows: int, seed: int) -> Arrays:
    return {f"in_{datatype}": array for datatype, array in sample_arrays(rows, seed).items()}


async def queue_behind_a_held_run(
    model: LoadedModel, max_rows: int, requests: list[tuple[Arrays, list[str]]]
) -> tuple[list[Arrays | BaseException], list[int]]:
    """Hold a 1-row run, queue `requests` in order, release: their answers (or errors) and
    the rows of every session run after the held one."""
    executor = HeldExecutor()
    batcher = DynamicBatcher(model, executor, ServerMetrics(), max_rows, 0.0, workers=1)
    try:
        held = asyncio.create_task(batcher.infer(feeds(1, seed=99), OUTPUTS[:1]))
        await executor.started.wait()
        tasks = [asyncio.create_task(batcher.infer(arrays, names)) for arrays, names in requests]
        await asyncio.sleep(0)  # each task queues its request before the held run ends
        executor.opened.set()
        await held
        answers = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.stop()
        executor.shutdown()
    return list(answers), executor.rows[1:]


def check_answer(answer: Arrays | BaseException, sent: Arrays, names: list[str]) -> None:
    assert isinstance(answer, dict), answer
    assert list(answer) == names  # exactly the requested outputs, in the requested order
    for name in names:
        np.testing.assert_array_equal(answer[name], sent[name.replace("out_", "in_")])


def test_followers_that_do_not_fit_wait_for_the_next_run(identity: LoadedModel) -> None:
    """5 + 5 rows exceed MAX_BATCH_SIZE=8: the first 5 runs with the 3 behind it, and the
    second 5 with the last 3; no run holds more than 8 rows."""
    sent = [feeds(rows, seed) for seed, rows in enumerate([5, 5, 3, 3])]
    names = [OUTPUTS[:2], OUTPUTS[::-1], ["out_BYTES"], OUTPUTS]
    requests = list(zip(sent, names, strict=True))
    answers, runs = asyncio.run(queue_behind_a_held_run(identity, 8, requests))
    assert runs == [8, 8]
    for answer, arrays, wanted in zip(answers, sent, names, strict=True):
        check_answer(answer, arrays, wanted)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_rows=st.integers(2, 8),
    requests=st.lists(
        st.tuples(
            st.integers(0, 9),
            st.lists(st.sampled_from(OUTPUTS), min_size=1, max_size=4, unique=True),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_any_row_counts_are_split_back_exactly(
    identity: LoadedModel, max_rows: int, requests: list[tuple[int, list[str]]]
) -> None:
    """Whatever rows arrive together, each request gets its own rows and outputs back, and no
    run exceeds max_rows but for a request of more rows, which runs alone."""
    sent = [(feeds(rows, seed), names) for seed, (rows, names) in enumerate(requests)]
    answers, runs = asyncio.run(queue_behind_a_held_run(identity, max_rows, sent))
    for (arrays, names), answer in zip(sent, answers, strict=True):
        check_answer(answer, arrays, names)
    larger = sorted(rows for rows, _ in requests if rows > max_rows)
    assert sorted(rows for rows in runs if rows > max_rows) == larger, runs
    assert sum(runs) == sum(rows for rows, _ in requests)


def test_a_lone_request_runs_once_its_wait_for_company_is_over(identity: LoadedModel) -> None:
    async def alone() -> Arrays:
        executor = InferenceExecutor(1)
        batcher = DynamicBatcher(identity, executor, ServerMetrics(), 8, 0.05, workers=1)
        try:
            return await batcher.infer(feeds(3, seed=1), ["out_INT8"])
        finally:
            await batcher.stop()
            executor.shutdown()

    check_answer(asyncio.run(alone()), feeds(3, seed=1), ["out_INT8"])


def test_a_request_that_finds_the_model_idle_runs_at_once(identity: LoadedModel) -> None:
    """No queue and no hand-off to the dispatcher, as without batching: also right after
    another run ended (its end must not hand the next lone request to the queue)."""

    async def one_after_another() -> bool:
        executor = InferenceExecutor(1)
        batcher = DynamicBatcher(identity, executor, ServerMetrics(), 8, 0.0, workers=1)
        try:
            for seed in range(5):
                answer = await batcher.infer(feeds(2, seed), ["out_INT8"])
                check_answer(answer, feeds(2, seed), ["out_INT8"])
            return batcher._dispatcher is None  # started by the first request ever queued
        finally:
            await batcher.stop()
            executor.shutdown()

    assert asyncio.run(one_after_another())


def test_inputs_that_disagree_on_rows_run_alone(identity: LoadedModel) -> None:
    """Such a request cannot be split back by rows: it is never merged with others."""
    odd = feeds(2, seed=1)
    odd["in_FP32"] = feeds(3, seed=2)["in_FP32"]
    requests = [(feeds(2, seed=3), OUTPUTS[:1]), (odd, ["out_FP32", "out_BOOL"])]
    answers, runs = asyncio.run(queue_behind_a_held_run(identity, 8, requests))
    assert sorted(runs) == [2, 2]  # two runs: nothing merged
    check_answer(answers[0], requests[0][0], OUTPUTS[:1])
    check_answer(answers[1], odd, ["out_FP32", "out_BOOL"])


def test_requests_still_queued_at_shutdown_get_503(identity: LoadedModel) -> None:
    async def shut_down_while_queued() -> BaseException | Arrays:
        executor = HeldExecutor()
        batcher = DynamicBatcher(identity, executor, ServerMetrics(), 8, 0.0, workers=1)
        held = asyncio.create_task(batcher.infer(feeds(1, seed=1), OUTPUTS[:1]))
        await executor.started.wait()
        queued = asyncio.create_task(batcher.infer(feeds(1, seed=2), OUTPUTS[:1]))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0)
        executor.opened.set()  # the run in progress finishes; the queued one never starts
        await stopping
        await held
        executor.shutdown()
        return (await asyncio.gather(queued, return_exceptions=True))[0]

    refused = asyncio.run(shut_down_while_queued())
    assert isinstance(refused, Unavailable), refused
    assert refused.status == 503


def test_a_request_whose_client_left_is_not_run(identity: LoadedModel) -> None:
    async def one_leaves() -> tuple[Arrays, list[int]]:
        executor = HeldExecutor()
        batcher = DynamicBatcher(identity, executor, ServerMetrics(), 8, 0.0, workers=1)
        held = asyncio.create_task(batcher.infer(feeds(1, seed=1), OUTPUTS[:1]))
        await executor.started.wait()
        gone = asyncio.create_task(batcher.infer(feeds(4, seed=2), OUTPUTS[:1]))
        stays = asyncio.create_task(batcher.infer(feeds(2, seed=3), OUTPUTS[:1]))
        await asyncio.sleep(0)
        gone.cancel()
        executor.opened.set()
        await held
        answer = await stays
        await batcher.stop()
        executor.shutdown()
        return answer, executor.rows[1:]

    answer, runs = asyncio.run(one_leaves())
    assert runs == [2]
    check_answer(answer, feeds(2, seed=3), OUTPUTS[:1])


def test_requests_merge_only_when_all_but_the_row_dimension_agree() -> None:
    def key(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> object:
        return _merge_key({name: np.zeros(shape, dtype)})

    assert key("x", (2, 3, 4)) == key("x", (5, 3, 4))
    for other in (
        key("x", (2, 4, 4)),
        key("x", (2, 3, 5)),
        key("x", (2, 3, 4), np.float64),
        key("y", (2, 3, 4)),
    ):
        assert key("x", (2, 3, 4)) != other
