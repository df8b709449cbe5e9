"""Property of the dynamic batcher (service/batching.py, in process, with the real model and
inference threads): whatever mix of request sizes arrives, however their arrivals interleave,
every request gets what a separate run of it gives, every row runs exactly once, and no run
holds more than the cap but for a larger request, which runs alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.batching import Arrays, DynamicBatcher
from service.metrics import ServerMetrics
from service.repository import ModelSource
from service.runtime import CPU, InferenceExecutor, LoadedModel, load_model
from tests.service.model_factory import DEFAULT_MODEL

OUTPUTS = ["logits", "label"]


@dataclass(frozen=True)
class CountingModel(LoadedModel):
    """The model, recording the rows of every session run (from any thread)."""

    runs: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, feeds: dict[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        with self.lock:
            self.runs.append(len(feeds["input"]))
        return super().run(feeds, output_names)


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model(ModelSource("mlp", "1", DEFAULT_MODEL), [CPU], 1)


def counting(model: LoadedModel) -> CountingModel:
    return CountingModel(**{f.name: getattr(model, f.name) for f in fields(LoadedModel)})


async def send_all(
    model: LoadedModel, max_rows: int, workers: int, requests: list[tuple[Arrays, float]]
) -> list[Arrays]:
    """Each request sent after its own delay (seconds), all at once; their answers."""
    executor = InferenceExecutor(workers)
    batcher = DynamicBatcher(model, executor, ServerMetrics(), max_rows, 0.0, workers)

    async def send(feeds: Arrays, after: float) -> Arrays:
        await asyncio.sleep(after)
        return await batcher.infer(feeds, OUTPUTS)

    try:
        return await asyncio.gather(*(send(feeds, after) for feeds, after in requests))
    finally:
        await batcher.stop()
        executor.shutdown()


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_rows=st.integers(2, 16),
    workers=st.integers(1, 2),
    requests=st.lists(
        st.tuples(
            st.integers(0, 4) | st.integers(0, 40),  # rows: mostly under the cap, some over
            st.sampled_from([0.0, 0.0, 0.0, 0.0005, 0.002]),  # seconds before it is sent
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_merged_answers_equal_separate_runs(
    mlp: LoadedModel, max_rows: int, workers: int, requests: list[tuple[int, float]]
) -> None:
    rng = np.random.default_rng(len(requests) * 100 + max_rows)
    sent = [
        ({"input": rng.standard_normal((rows, 256)).astype(np.float32)}, after)
        for rows, after in requests
    ]
    model = counting(mlp)
    answers = asyncio.run(send_all(model, max_rows, workers, sent))
    for (feeds, _), answer in zip(sent, answers, strict=True):
        logits, label = mlp.run(feeds, OUTPUTS)  # the same request, run on its own
        assert list(answer) == OUTPUTS
        np.testing.assert_allclose(answer["logits"], logits, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(answer["label"], label)
    assert sum(model.runs) == sum(rows for rows, _ in requests)
    larger = sorted(rows for rows, _ in requests if rows > max_rows)
    assert sorted(rows for rows in model.runs if rows > max_rows) == larger, model.runs
