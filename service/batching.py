"""Running requests on a model: one session run each, or merged by the dynamic batcher.

The dynamic batcher queues concurrent requests for one model version, concatenates
compatible ones along the first dimension into one session run of at most MAX_BATCH_SIZE
rows, waiting at most MAX_BATCH_DELAY_MS for company, and splits the outputs back by each
request's row count. It only forms a batch while an inference worker is free, so under load
requests accumulate into larger batches instead of queueing behind small ones; with no delay,
a request that finds a worker free and nobody queued runs at once, as without batching. A
request of more than MAX_BATCH_SIZE rows runs alone (the hard cap an explicit MAX_BATCH_SIZE
sets is checked before, by the caller: `check_hard_cap`); when a merged run fails, each of its
requests runs alone so that one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.errors import BadRequest, ServerFault, Unavailable
from service.metrics import ServerMetrics
from service.runtime import InferenceExecutor, LoadedModel
from service.settings import DEFAULT_MAX_BATCH_SIZE

Arrays = dict[str, np.ndarray]


class Runner(Protocol):
    async def infer(self, feeds: Arrays, output_names: Sequence[str]) -> Arrays: ...

    async def stop(self) -> None: ...


def _rows(array: np.ndarray) -> int:
    return int(array.shape[0]) if array.ndim else 1


def rows_of(feeds: Arrays) -> int:
    """The batch size of a request: its inputs' common first dimension."""
    return _rows(next(iter(feeds.values())))


class DirectRunner:
    """Each request is its own session run (batching off)."""

    def __init__(
        self, model: LoadedModel, executor: InferenceExecutor, metrics: ServerMetrics
    ) -> None:
        self._model, self._executor, self._metrics = model, executor, metrics

    async def infer(self, feeds: Arrays, output_names: Sequence[str]) -> Arrays:
        results = await self._executor.run_short_inline(self._model, feeds, output_names)
        self._metrics.observe_batch(self._model.name, rows_of(feeds), 1)
        return dict(zip(output_names, results, strict=True))

    async def stop(self) -> None:
        return None


@dataclass(eq=False)
class _Pending:
    feeds: Arrays
    rows: int
    arrived: float
    future: asyncio.Future[Arrays] = field(repr=False)
    _key: Hashable | None = field(default=None, repr=False)

    @property
    def key(self) -> Hashable:
        """What must agree for requests to merge (worked out only once one could)."""
        if self._key is None:
            self._key = _merge_key(self.feeds)
        return self._key


def _merge_key(feeds: Arrays) -> Hashable:
    """Requests merge only if names, dtypes and all but the first dimension agree."""
    rows = {array.shape[0] for array in feeds.values()}
    if len(rows) != 1:
        return object()  # inputs disagree on the batch size: never merge this one
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


class DynamicBatcher:
    """Merges concurrent requests for one batchable model into shared session runs."""

    def __init__(
        self,
        model: LoadedModel,
        executor: InferenceExecutor,
        metrics: ServerMetrics,
        max_rows: int,
        max_delay_s: float,
        workers: int,
    ) -> None:
        self._model, self._executor, self._metrics = model, executor, metrics
        self._max_rows, self._max_delay_s = max_rows, max_delay_s
        self._output_names = list(model.outputs)
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()  # a request arrived, or a run ended
        self._workers, self._busy = workers, 0  # inference workers, and runs on them now
        self._running: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None  # started by the first queued one

    async def infer(self, feeds: Arrays, output_names: Sequence[str]) -> Arrays:
        loop = asyncio.get_running_loop()
        item = _Pending(feeds, rows_of(feeds), loop.time(), loop.create_future())
        idle = not self._pending and self._busy < self._workers and not self._max_delay_s
        self._pending.append(item)
        if idle and await self._still_alone(item):
            return await self._run_now(item, output_names)
        if self._dispatcher is None:  # on the server's event loop (models load before it)
            self._dispatcher = loop.create_task(self._dispatch())
        self._wake.set()
        results = await item.future
        return {name: results[name] for name in output_names}

    async def _still_alone(self, item: _Pending) -> bool:
        """Let the requests that arrived with this one reach the queue (one turn of the event
        loop, no wait): True, and `item` off the queue, if none did and a worker is free."""
        try:
            await asyncio.sleep(0)
        except BaseException:  # the client has gone away
            item.future.cancel()
            if item in self._pending:
                self._pending.remove(item)
            raise
        if self._pending == [item] and self._busy < self._workers:
            self._pending.clear()
            return True
        return False

    async def _run_now(self, item: _Pending, output_names: Sequence[str]) -> Arrays:
        """A request alone on an idle model: run it as DirectRunner would (inline if short)."""
        self._busy += 1
        try:
            results = await self._executor.run_short_inline(self._model, item.feeds, output_names)
        finally:
            self._release()
        self._metrics.observe_batch(self._model.name, item.rows, 1)
        return dict(zip(output_names, results, strict=True))

    async def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if self._running:
            await asyncio.wait(self._running)
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(Unavailable("server is shutting down"))
        self._pending.clear()

    async def _dispatch(self) -> None:
        while True:
            batch = await self._collect()
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self) -> list[_Pending]:
        """Wait for a request and a free worker, then for company until the batch is full or
        the delay is up."""
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [item for item in self._pending if not item.future.done()]
            if not self._pending or self._busy >= self._workers:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, rows = self._select()
            remaining = self._pending[0].arrived + self._max_delay_s - loop.time()
            if rows >= self._max_rows or remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                batch, rows = self._select()
                break
        chosen = set(map(id, batch))
        self._pending = [item for item in self._pending if id(item) not in chosen]
        return batch

    def _select(self) -> tuple[list[_Pending], int]:
        """The oldest request plus compatible followers that fit in max_rows, in order (a
        request of more rows than that runs alone)."""
        first = self._pending[0]
        batch, rows = [first], first.rows
        for item in self._pending[1:]:
            if rows >= self._max_rows:
                break
            if item.key == first.key and rows + item.rows <= self._max_rows:
                batch.append(item)
                rows += item.rows
        return batch, rows

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            await self._run(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
            else:
                # One request's values (e.g. an out-of-range index) can fail the merged run:
                # run each alone so that only the bad one gets the error.
                for item in batch:
                    await self._run_alone(item)
        finally:
            self._release()

    def _release(self) -> None:
        """A run ended: wake the dispatcher if requests wait for the worker (else the next
        request, finding the model idle, runs at once: waking it would take that one)."""
        self._busy -= 1
        if self._pending:
            self._wake.set()

    async def _run_alone(self, item: _Pending) -> None:
        if item.future.done():  # the client has gone away
            return
        try:
            await self._run([item])
        except Exception as exc:
            self._fail(item, exc)

    async def _run(self, batch: list[_Pending]) -> None:
        """One session run for ``batch``, delivering each request its share of the outputs."""
        feeds = (
            batch[0].feeds
            if len(batch) == 1
            else {
                name: np.concatenate([item.feeds[name] for item in batch])
                for name in batch[0].feeds
            }
        )
        # Short merged runs inline too: the hop to the thread would cost more than the run.
        results = await self._executor.run_short_inline(self._model, feeds, self._output_names)
        self._metrics.observe_batch(self._model.name, sum(i.rows for i in batch), len(batch))
        self._deliver(batch, dict(zip(self._output_names, results, strict=True)))

    @staticmethod
    def _fail(item: _Pending, exc: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(exc)

    def _deliver(self, batch: list[_Pending], results: Arrays) -> None:
        if len(batch) == 1:  # nothing to split (its inputs may even disagree on rows)
            if not batch[0].future.done():
                batch[0].future.set_result(results)
            return
        total = sum(item.rows for item in batch)
        for name, array in results.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise ServerFault(f"output '{name}' has no batch dimension to split")
        start = 0
        for item in batch:
            stop = start + item.rows
            if not item.future.done():  # the client may have gone away
                item.future.set_result({n: a[start:stop] for n, a in results.items()})
            start = stop


def batch_limit(model: LoadedModel, max_batch_size: int | None) -> int:
    """The rows one merged run may hold for `model`: MAX_BATCH_SIZE (unset: the default) when
    the dynamic batcher serves it (batching on, and a batch dimension on every input and
    output), else 0."""
    rows = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size
    return rows if rows > 1 and model.batchable else 0


def check_hard_cap(feeds: Arrays, max_rows: int, model: str) -> None:
    """An explicit MAX_BATCH_SIZE is a hard cap: like Triton, refuse a request larger than
    the max_batch_size that /config shows."""
    for name, array in feeds.items():
        if (rows := _rows(array)) > max_rows:
            raise BadRequest(
                f"input '{name}' has a batch of {rows} rows, more than "
                f"MAX_BATCH_SIZE={max_rows} for model '{model}'",
            )


def make_runner(
    model: LoadedModel,
    executor: InferenceExecutor,
    metrics: ServerMetrics,
    max_rows: int,
    max_batch_delay_ms: float,
    workers: int,
) -> Runner:
    """The batcher for a model with a batch limit (batch_limit), else direct runs."""
    if max_rows:
        return DynamicBatcher(
            model, executor, metrics, max_rows, max_batch_delay_ms / 1000.0, workers
        )
    return DirectRunner(model, executor, metrics)
