"""Prometheus metrics: requests by model and status, latency, batch sizes, in-flight requests
and the inference log's counters, added up over every server process (``WORKERS``).

The numbers live in float64 cells, one block per process: a process writes only its own
block (one writer per cell, so no locks), and ``/metrics``, whichever process answers it, sums
all blocks. With ``WORKERS`` > 1 the blocks are one shared memory mapping (a memfd the
supervisor creates: nothing on disk); otherwise they are private memory. An update is an
indexed add on a memoryview, much cheaper than prometheus_client's locked children;
prometheus_client only renders the text format.
"""

from __future__ import annotations

import mmap
import os
from bisect import bisect_left
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from service.errors import ERRORS

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
REQUEST_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)
# The label of requests for models the server does not serve (one label, however many junk
# names clients ask for). No served model can be named so: a model's name is a folder's name or
# MODEL_NAME ([A-Za-z0-9_.-]+), and neither can hold a "/".
UNKNOWN_MODEL = "/unknown"
# Every status an inference request can end with (errors.py lists the errors).
# 499: the client closed the connection before its reply was sent (service/app.py).
STATUSES = tuple(sorted({200, 499, 500, *(error.status for error in ERRORS)}))
# refused: a row the database would not take (its batch's other rows were written).
DROP_REASONS = ("queue_full", "write_error", "shutdown", "misconfigured", "refused")
CELL_BYTES = 8

# The cells of one model label: requests by status, then three histograms, each as its
# buckets' own counts (not cumulative), the +Inf bucket, and the sum.
_REQUESTS = 0
_LATENCY = _REQUESTS + len(STATUSES)
_ROWS = _LATENCY + len(LATENCY_BUCKETS) + 2
_MERGED = _ROWS + len(ROW_BUCKETS) + 2
MODEL_CELLS = _MERGED + len(REQUEST_BUCKETS) + 2
# The process-wide cells, before the models' rows.
IN_FLIGHT, LOG_ON, LOG_WRITTEN, LOG_QUEUED, LOG_CONNECTED = 0, 1, 2, 3, 4
LOG_DROPPED = 5
GLOBAL_CELLS = LOG_DROPPED + len(DROP_REASONS)
_STATUS_INDEX = {status: index for index, status in enumerate(STATUSES)}
_DROP_INDEX = {reason: LOG_DROPPED + index for index, reason in enumerate(DROP_REASONS)}


def block_cells(models: Sequence[str]) -> int:
    """Cells per process for these served model names (plus the unknown-model label)."""
    return GLOBAL_CELLS + MODEL_CELLS * (len(dict.fromkeys(models)) + 1)


def shared_memory(models: Sequence[str], processes: int) -> int:
    """A memfd (memory only, no file) sized for `processes` blocks: the supervisor creates
    it, its workers map it. Zero-filled."""
    fd = os.memfd_create("onnx-serving-metrics", 0)
    os.ftruncate(fd, block_cells(models) * processes * CELL_BYTES)
    return fd


class ServerMetrics:
    """The server's metrics. `models` fixes the labels of a shared mapping (`fd`, `blocks`
    processes, this one's block `index`); without `fd` the cells are private and a model
    seen for the first time gets its row then."""

    def __init__(
        self,
        models: Sequence[str] = (),
        fd: int | None = None,
        blocks: int = 1,
        index: int = 0,
    ) -> None:
        names = list(dict.fromkeys(models))
        self._labels = [*names, UNKNOWN_MODEL]  # by row
        self._rows = {name: index for index, name in enumerate(names)}  # served models only
        self._unknown = len(names)  # the unknown models' row
        self._shared = fd is not None
        self._blocks, self._index = blocks, index
        self._size = block_cells(self._labels[:-1])
        if fd is not None:
            self._memory: mmap.mmap | bytearray = mmap.mmap(fd, self._size * blocks * CELL_BYTES)
        else:
            self._memory = bytearray(self._size * CELL_BYTES)
        self._view()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def _view(self) -> None:
        cells = memoryview(self._memory).cast("d")
        start = self._index * self._size if self._shared else 0
        self._mine = cells[start : start + self._size]

    def _row(self, model: str | None) -> int:
        """Where `model`'s cells start in this process's block."""
        row = self._unknown if model is None else self._rows.get(model)
        if row is None:
            row = self._unknown if self._shared else self._add_label(model or "")
        return GLOBAL_CELLS + row * MODEL_CELLS

    def _add_label(self, model: str) -> int:
        """A private block grows by one row at its end; other rows keep their place."""
        self._labels.append(model)
        self._rows[model] = len(self._labels) - 1
        old, self._size = self._memory, self._size + MODEL_CELLS
        self._mine.release()
        self._memory = bytearray(self._size * CELL_BYTES)
        self._memory[: len(old)] = old
        self._view()
        return self._rows[model]

    def restart(self) -> None:
        """A restarted process's gauges start from zero (its counters go on adding up)."""
        self._mine[IN_FLIGHT] = self._mine[LOG_QUEUED] = self._mine[LOG_CONNECTED] = 0.0

    # ---- the request path -------------------------------------------------------------

    def observe_request(self, model: str | None, status: int, seconds: float) -> None:
        row = self._row(model)
        mine = self._mine
        mine[row + _REQUESTS + _STATUS_INDEX.get(status, _STATUS_INDEX[500])] += 1.0
        start = row + _LATENCY
        mine[start + bisect_left(LATENCY_BUCKETS, seconds)] += 1.0
        mine[start + len(LATENCY_BUCKETS) + 1] += seconds

    def observe_batch(self, model: str, rows: int, requests: int) -> None:
        row = self._row(model)
        mine = self._mine
        start = row + _ROWS
        mine[start + bisect_left(ROW_BUCKETS, rows)] += 1.0
        mine[start + len(ROW_BUCKETS) + 1] += rows
        start = row + _MERGED
        mine[start + bisect_left(REQUEST_BUCKETS, requests)] += 1.0
        mine[start + len(REQUEST_BUCKETS) + 1] += requests

    def add_in_flight(self, change: int) -> None:
        self._mine[IN_FLIGHT] += change

    # ---- the inference log --------------------------------------------------------------

    def log_on(self) -> None:
        """The prediction_log_* families appear once a process has an inference log."""
        self._mine[LOG_ON] = 1.0

    def log_written(self, rows: int) -> None:
        self._mine[LOG_WRITTEN] += rows

    def log_dropped(self, reason: str, rows: int) -> None:
        self._mine[_DROP_INDEX[reason]] += rows

    def log_queued(self, rows: int) -> None:
        self._mine[LOG_QUEUED] = rows

    def log_connected(self, connected: bool) -> None:
        self._mine[LOG_CONNECTED] = float(connected)

    # ---- /metrics -------------------------------------------------------------------------

    def totals(self) -> np.ndarray:
        """Every cell summed over all processes."""
        if not self._shared:
            return np.frombuffer(self._memory, dtype=np.float64).copy()
        cells = np.frombuffer(self._memory, dtype=np.float64, count=self._size * self._blocks)
        summed: np.ndarray = cells.reshape(self._blocks, self._size).sum(axis=0)
        return summed

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def labels(self) -> list[str]:
        """The model label of each row, in order."""
        return list(self._labels)

    def unknown_row(self) -> int:
        return self._unknown


class _Collector:
    """Renders the summed cells as Prometheus metric families."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        totals = self._metrics.totals()
        rows = [
            (label, GLOBAL_CELLS + index * MODEL_CELLS)
            for index, label in enumerate(self._metrics.labels())
        ]
        requests = CounterMetricFamily(
            "inference_requests",
            "Inference requests by model and HTTP status",
            labels=["model", "status"],
        )
        for label, row in rows:
            for index, status in enumerate(STATUSES):
                if value := totals[row + _REQUESTS + index]:
                    requests.add_metric([label, str(status)], value)
        yield requests
        yield _histogram(
            "inference_request_duration_seconds",
            "Inference request latency in the server",
            totals,
            rows,
            _LATENCY,
            LATENCY_BUCKETS,
        )
        unknown = rows[self._metrics.unknown_row()]
        served = [row for row in rows if row is not unknown]
        yield _histogram(
            "inference_batch_rows",
            "Rows (first dimension) per ONNX Runtime session run",
            totals,
            served,
            _ROWS,
            ROW_BUCKETS,
        )
        yield _histogram(
            "inference_batch_requests",
            "Requests merged into one ONNX Runtime session run",
            totals,
            served,
            _MERGED,
            REQUEST_BUCKETS,
        )
        yield GaugeMetricFamily(
            "inference_requests_in_flight",
            "Inference requests being handled now",
            value=totals[IN_FLIGHT],
        )
        if totals[LOG_ON]:
            yield from _log_families(totals)


def _log_families(totals: np.ndarray) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "prediction_log_written",
        "Inference log rows written to PostgreSQL",
        value=totals[LOG_WRITTEN],
    )
    dropped = CounterMetricFamily(
        "prediction_log_dropped",
        "Inference log rows not written: queue_full (database slow or down), write_error "
        "(the database refused their batch), shutdown (flush time ran out), misconfigured, "
        "refused (the database refused that row's data; the rest of its batch was written)",
        labels=["reason"],
    )
    for reason, cell in _DROP_INDEX.items():
        dropped.add_metric([reason], totals[cell])
    yield dropped
    yield GaugeMetricFamily(
        "prediction_log_queued",
        "Inference log rows held in memory, waiting to be written",
        value=totals[LOG_QUEUED],
    )
    yield GaugeMetricFamily(
        "prediction_log_connected",
        "Server processes whose inference log has a database connection (1 or 0 with WORKERS=1)",
        value=totals[LOG_CONNECTED],
    )


def _histogram(
    name: str,
    documentation: str,
    totals: np.ndarray,
    rows: list[tuple[str, int]],
    offset: int,
    bounds: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["model"])
    for label, row in rows:
        start = row + offset
        counts = np.cumsum(totals[start : start + len(bounds) + 1])
        if not counts[-1]:
            continue  # as prometheus_client: a label appears once it has been observed
        buckets = [
            (str(float(bound)), float(count)) for bound, count in zip(bounds, counts, strict=False)
        ]
        buckets.append(("+Inf", float(counts[-1])))
        family.add_metric([label], buckets, float(totals[start + len(bounds) + 1]))
    return family
