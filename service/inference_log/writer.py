"""The writer: a bounded in-memory queue, batched to PostgreSQL by one task.

Requests append to the queue (no I/O); the writer task COPYs it in batches over one asyncpg
connection, reconnects with backoff, halves a batch the database refuses for its data, and
counts every row it cannot keep in ``prediction_log_dropped_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from contextlib import suppress
from typing import Any

import asyncpg

from service.inference_log.config import LogConfig, config_from
from service.inference_log.database_url import LogConfigError, describe_target, redact
from service.inference_log.entries import LogEntry, cut_text, encode_payloads, row_cost, table_rows
from service.inference_log.schema import SCHEMA_VERSION, TABLE, migrate, write_rows
from service.inference_log.write_errors import (
    connection_is_idle,
    connection_problem,
    failure_text,
    row_problem,
)
from service.metrics import DROP_REASONS, ServerMetrics
from service.settings import Settings

# One logger for the whole inference log, named as operators filter its lines.
log = logging.getLogger("service.inference_log")

BATCH_ROWS = 1000  # rows per COPY
LINGER_S = 0.1  # a lone row waits this long for company: one COPY per 100 ms under load
CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
CLOSING_RETRY_S = 0.2  # during the shutdown flush, retry quickly until its time is up
REFUSED_ATTEMPTS = 3  # a batch the database itself rejects is dropped after this many tries


class _SchemaError(Exception):
    """Connected, but the tables could not be created or migrated (the cause says why)."""


class InferenceLog:
    """The bounded queue, its writer task and its metrics."""

    def __init__(
        self, config: LogConfig | None, metrics: ServerMetrics, problem: str | None = None
    ) -> None:
        self._config = config
        self._problem = problem  # set: misconfigured, every row is dropped
        self.server_id = uuid.uuid4()
        self._metrics = metrics
        metrics.log_on()
        self._queue: deque[LogEntry] = deque()
        self._rows_held = 0  # rows in memory: queued, plus the batch being written
        self._held_bytes = 0  # what those rows are charged (row_cost)
        # The batch being written, as pieces still to write, in order; each row with its
        # cost. A piece the database refuses for its data is replaced by its two halves.
        self._batch: deque[list[tuple[tuple[Any, ...], int]]] = deque()
        self._attempts = 0  # failed writes of the current batch
        self._retry = False  # a write of the current batch failed: it may have committed
        self._refusals_logged: set[str] = set()
        self._seq = 0
        self._database: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._idle = False
        self._closing = False
        self._reported: set[str] = set()  # problems logged since the last success
        self._written_rows = 0
        self._dropped_rows = dict.fromkeys(DROP_REASONS, 0)
        self._limit = config.queue_size if config else 0
        self._budget = config.queue_bytes if config else 0
        self._payloads = config.payloads if config else False

    # The gauges follow these two (every process's /metrics adds them up: metrics.py).
    @property
    def _held(self) -> int:
        return self._rows_held

    @_held.setter
    def _held(self, rows: int) -> None:
        self._rows_held = rows
        self._metrics.log_queued(rows)

    @property
    def _connection(self) -> asyncpg.Connection | None:
        return self._database

    @_connection.setter
    def _connection(self, connection: asyncpg.Connection | None) -> None:
        self._database = connection
        self._metrics.log_connected(connection is not None)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServerMetrics) -> InferenceLog:
        """The log for PREDICTION_LOG_*; one ERROR line and a dropping log if unusable."""
        try:
            config = config_from(settings)
        except LogConfigError as exc:
            log.error("inference log off: %s; serving continues without it", exc)
            return cls(None, metrics, str(exc))
        log.info(
            "inference log: writing to %s (payloads %s, queue %d rows)",
            describe_target(config.url),
            "on" if config.payloads else "off",
            config.queue_size,
        )
        return cls(config, metrics)

    # ---- the request path: no I/O, no awaiting ------------------------------------------

    def entry(self, model: str, started: float) -> LogEntry:
        """A request's row, begun when it arrives (`started`: time.time())."""
        return LogEntry(cut_text(model) or "", started, self._payloads)

    def submit(self, entry: LogEntry) -> None:
        """Queue a finished request's row, or count it as dropped."""
        if self._problem is not None:
            self._count_drop(1, "misconfigured")
            return
        if self._closing:
            self._count_drop(1, "shutdown")
            return
        cost = row_cost(entry)
        if self._held >= self._limit or self._held_bytes + cost > self._budget:
            self._count_drop(1, "queue_full")
            if "queue_full" not in self._reported:
                self._reported.add("queue_full")
                log.error(
                    "inference log: queue full (%d rows, %d bytes held); dropping rows until the "
                    'database catches up (prediction_log_dropped_total{reason="queue_full"})',
                    self._held,
                    self._held_bytes,
                )
            return
        self._queue.append(entry)
        self._held += 1
        self._held_bytes += cost
        if self._idle:
            self._idle = False
            self._wake.set()

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (from the running event loop); it connects in the background."""
        if self._config is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="inference-log-writer")

    async def close(self) -> None:
        """Flush what is queued, for at most the flush timeout, then stop."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            timeout = self._config.flush_timeout_s if self._config else 0.0
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
        self._drop_all("shutdown")
        await self._disconnect()
        if self._config is not None:
            drops = {reason: rows for reason, rows in self._dropped_rows.items() if rows}
            log.info(
                "inference log: stopped; %d rows written%s",
                self._written_rows,
                f", dropped {drops}" if drops else "",
            )

    # ---- the writer ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._write_forever()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take serving down: stop logging, loudly
            log.exception("inference log: writer failed; no further rows are written")
            self._problem = "writer failed"
            self._drop_all("write_error")

    async def _write_forever(self) -> None:
        assert self._config is not None
        backoff = BACKOFF_FIRST_S
        lost_writes = 0  # connections lost while writing since the last row written
        while True:
            if self._closing and not self._held:
                return
            if self._connection is None:
                try:
                    await self._connect(self._config)
                except (ValueError, TypeError, ArithmeticError) as exc:  # asyncpg's URL checks
                    shown = redact(self._config.url)
                    self._misconfigured(f"PREDICTION_LOG_URL={shown!r} is unusable: {exc}")
                    return
                except Exception as exc:
                    target = describe_target(self._config.url)
                    if isinstance(exc, _SchemaError) and exc.__cause__ is not None:
                        self._report(f"cannot create or migrate {TABLE} in {target}", exc.__cause__)
                    else:
                        self._report(f"cannot connect to {target}", exc)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
            if not self._batch:
                if not self._queue:
                    if self._closing:
                        return
                    self._idle = True
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if len(self._queue) < BATCH_ROWS and not self._closing:
                    await self._pause(LINGER_S)
                await self._take_batch()
            piece = self._batch[0]
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await write_rows(self._connection, [row for row, _ in piece], self._retry)
            except Exception as exc:
                self._retry = True
                if row_problem(exc):
                    # The connection is kept for the halves when the failed COPY left it idle.
                    connection = self._connection
                    if connection is None or not connection_is_idle(connection):
                        await self._disconnect()
                    self._isolate(exc)
                    continue
                await self._disconnect()
                self._attempts += 1
                if connection_problem(exc):
                    self._report("lost the database connection while writing", exc)
                    # One lost connection (a restart) is retried at once; a database that
                    # accepts connections but breaks every write gets the backoff too.
                    if lost_writes:
                        await self._pause(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX_S)
                    lost_writes += 1
                    continue
                self._report("the database refused a batch of rows", exc)
                if self._attempts >= REFUSED_ATTEMPTS:
                    self._drop_batch("write_error")
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self._batch.popleft()
            self._metrics.log_written(len(piece))
            self._written_rows += len(piece)
            self._release(piece)
            if not self._batch:
                self._attempts, self._retry = 0, False
            backoff, lost_writes = BACKOFF_FIRST_S, 0
            if self._reported:
                log.info("inference log: writing again")
                self._reported.clear()

    async def _connect(self, config: LogConfig) -> None:
        connection = await asyncpg.connect(
            config.url,
            password=config.password,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=WRITE_TIMEOUT_S,
            server_settings={"application_name": "onnx-serving inference log"},
        )
        try:
            version = await migrate(connection)
        except Exception as exc:
            connection.terminate()
            raise _SchemaError() from exc
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection
        log.info(
            "inference log: connected to %s (schema version %d)",
            describe_target(config.url),
            version,
        )
        if version > SCHEMA_VERSION:
            log.info(
                "inference log: the schema is newer than this server's (%d); "
                "writing the columns it knows",
                SCHEMA_VERSION,
            )

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()  # no goodbye round trip: the server may be gone or stuck

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake when shutdown starts; then retry quickly until the flush ends."""
        if self._closing:
            await asyncio.sleep(min(seconds, CLOSING_RETRY_S))
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def _take_batch(self) -> None:
        count = min(len(self._queue), BATCH_ROWS)
        entries = [self._queue.popleft() for _ in range(count)]
        if any(entry.inputs is not None or entry.outputs is not None for entry in entries):
            payloads = await asyncio.to_thread(encode_payloads, entries)
        else:
            payloads = [None] * count
        rows = table_rows(entries, payloads, self.server_id, self._seq)
        # Each row keeps the cost it was charged when queued, released when it leaves.
        self._batch.append(list(zip(rows, map(row_cost, entries), strict=True)))
        self._seq += count

    # ---- accounting and reporting -------------------------------------------------------

    def _count_drop(self, rows: int, reason: str) -> None:
        self._metrics.log_dropped(reason, rows)
        self._dropped_rows[reason] += rows

    def _release(self, piece: list[tuple[tuple[Any, ...], int]]) -> None:
        self._held -= len(piece)
        self._held_bytes -= sum(cost for _, cost in piece)

    def _drop_batch(self, reason: str) -> None:
        rows = sum(len(piece) for piece in self._batch)
        log.error("inference log: %d rows dropped (%s)", rows, reason)
        self._count_drop(rows, reason)
        for piece in self._batch:
            self._release(piece)
        self._batch.clear()
        self._attempts, self._retry = 0, False

    def _isolate(self, exc: BaseException) -> None:
        """The first piece was refused for its data: halve it, or drop it when it is one row."""
        piece = self._batch.popleft()
        if len(piece) > 1:
            half = len(piece) // 2
            self._batch.extendleft((piece[half:], piece[:half]))
            return
        self._count_drop(1, "refused")
        self._release(piece)
        why = failure_text(exc)
        # One line per kind of refusal (at most a few kinds): a client may send many such rows.
        if why not in self._refusals_logged and len(self._refusals_logged) < 10:
            self._refusals_logged.add(why)
            log.error(
                "inference log: the database refused a row (%s); it is dropped, the rows "
                'around it are written (prediction_log_dropped_total{reason="refused"})',
                why,
            )
        else:
            log.debug("inference log: the database refused a row (%s)", why)
        if not self._batch:
            self._attempts, self._retry = 0, False

    def _drop_all(self, reason: str) -> None:
        if self._held:
            log.warning("inference log: %d rows dropped (%s)", self._held, reason)
            self._count_drop(self._held, reason)
        self._queue.clear()
        self._batch.clear()
        self._attempts, self._retry = 0, False
        self._held = self._held_bytes = 0

    def _misconfigured(self, problem: str) -> None:
        log.error("inference log off: %s; serving continues without it", problem)
        self._problem = problem
        self._drop_all("misconfigured")

    def _report(self, what: str, exc: BaseException) -> None:
        """One line per distinct problem until the next successful write."""
        why = failure_text(exc)
        if why in self._reported:
            log.debug("inference log: %s: %s", what, why)
            return
        self._reported.add(why)
        log.error(
            "inference log: %s (%s); serving continues, %d rows wait in memory (at most %d), "
            "retrying with backoff",
            what,
            why,
            self._held,
            self._limit,
        )
