"""The inference log: one row per inference request in PostgreSQL, never in the way of serving.

Each request fills a :class:`LogEntry` as it goes and hands it to :meth:`InferenceLog.submit`:
an append to a bounded in-memory queue, no I/O. One writer task takes the queue in batches and
COPYs them into ``inference_log`` over a single asyncpg connection. When the database is slow
or down, requests answer exactly as without the log: rows wait in memory (at most
``PREDICTION_LOG_QUEUE_SIZE`` rows and ``QUEUE_BUDGET_BYTES``, each row charged what it holds),
rows that cannot be kept are counted in ``prediction_log_dropped_total{reason}``, and the writer
reconnects with exponential backoff. Every row carries (server_id, seq), the table's primary
key, so a batch whose write failed half-way (the commit may have happened) is retried with
ON CONFLICT DO NOTHING: no row is written twice. A batch the database refuses for its data is
halved until the refused rows are alone: the others are written, those are dropped
(``refused``). At shutdown the queue is flushed for at most ``PREDICTION_LOG_FLUSH_TIMEOUT_S``.

Bad configuration (a malformed URL, an unreadable password file) is one ERROR line at startup;
serving goes on, and the rows are counted as dropped with reason ``misconfigured``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import sys
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import asyncpg
import numpy as np
import orjson

from service.binary import encode_tensor
from service.metrics import DROP_REASONS, ServerMetrics
from service.protocol import RequestedOutput
from service.settings import Settings
from service.tensors import TensorSpec

log = logging.getLogger(__name__)

TABLE = "inference_log"
# Versioned, additive migrations: a server writes the columns it knows, so an older server
# keeps working on a database a newer one has migrated.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
        CREATE TABLE {TABLE} (
            server_id uuid NOT NULL,
            seq bigint NOT NULL,
            started_at timestamptz NOT NULL,
            request_id text NOT NULL,
            model text NOT NULL,
            model_version text,
            status smallint NOT NULL,
            error text,
            latency_ms double precision NOT NULL,
            batch_rows integer,
            input_bytes bigint,
            output_bytes bigint,
            input_sha256 bytea,
            payload jsonb,
            PRIMARY KEY (server_id, seq)
        );
        CREATE INDEX {TABLE}_started_at ON {TABLE} (started_at);
        COMMENT ON TABLE {TABLE} IS 'One row per inference request (onnx-serving)';
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
COLUMNS = (
    "server_id",
    "seq",
    "started_at",
    "request_id",
    "model",
    "model_version",
    "status",
    "error",
    "latency_ms",
    "batch_rows",
    "input_bytes",
    "output_bytes",
    "input_sha256",
    "payload",
)
# Serialises migrations of servers starting together on one database.
MIGRATION_LOCK = 0x6F6E6E78_6C6F6701
RETRY_TABLE = "inference_log_retry"

BATCH_ROWS = 1000  # rows per COPY
LINGER_S = 0.1  # a lone row waits this long for company: one COPY per 100 ms under load
CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
CLOSING_RETRY_S = 0.2  # during the shutdown flush, retry quickly until its time is up
REFUSED_ATTEMPTS = 3  # a batch the database itself rejects is dropped after this many tries
# Memory the queued rows may hold, the batch being written included: each row is charged
# ROW_BYTES, its texts' size and its kept tensors (PREDICTION_LOG_PAYLOADS=1).
QUEUE_BUDGET_BYTES = 64 * 1024 * 1024
ROW_BYTES = 1024  # a row's objects besides its texts and tensors (measured: under 700 bytes)
INLINE_HASH_BYTES = 256 * 1024  # larger inputs are hashed on a thread, off the event loop
TEXT_LIMIT = 2000  # error texts, client-chosen ids and names are cut to this many characters

SCHEMES = ("postgresql", "postgres")


class LogConfigError(ValueError):
    """PREDICTION_LOG_* cannot work as given; the message is safe to log (no password)."""


class _SchemaError(Exception):
    """Connected, but the tables could not be created or migrated (the cause says why)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***, even when it is malformed."""
    head, at, tail = url.rpartition("@")
    if at:
        scheme, sep, userinfo = head.partition("://")
        prefix = scheme + sep if sep else ""
        userinfo = userinfo if sep else head
        if ":" in userinfo:
            head = prefix + userinfo.split(":", 1)[0] + ":***"
        url = head + at + tail
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


def split_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password percent-decoded, or None).

    The userinfo ends at the last '@', so a password with an unencoded '#', '/', '?', '@' or
    '%' is still the password: no URL parser, log line or error message ever sees it."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon):
        return url, None
    return f"{scheme}://{quote(unquote(user), safe='')}@{hostpart}", unquote(password)


def describe_target(url: str) -> str:
    """user@host:port/database of a valid URL, for log lines."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else "(default user)"
    where = parts.hostname or "(default host)"
    return f"{user}@{where}:{parts.port or 5432}{parts.path or '/'}"


def check_url(url: str) -> None:
    """Raise LogConfigError when ``url`` cannot be a PostgreSQL connection URL."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when not a number in range
    except ValueError as exc:
        raise LogConfigError(f"PREDICTION_LOG_URL={shown!r} is malformed: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise LogConfigError(
            f"PREDICTION_LOG_URL={shown!r} is not a postgresql://user@host[:port]/database URL"
        )
    if any(char.isspace() for char in url):
        raise LogConfigError(f"PREDICTION_LOG_URL={shown!r} contains whitespace")


@dataclass(frozen=True)
class LogConfig:
    url: str
    password: str | None
    payloads: bool
    queue_size: int
    flush_timeout_s: float
    queue_bytes: int = QUEUE_BUDGET_BYTES


def config_from(settings: Settings) -> LogConfig:
    """The log's configuration; LogConfigError when the URL or password file is unusable."""
    assert settings.prediction_log_url is not None
    url, password = split_password(settings.prediction_log_url)
    check_url(url)
    if settings.prediction_log_password_file is not None:
        path = settings.prediction_log_password_file
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise LogConfigError(
                f"PREDICTION_LOG_PASSWORD_FILE={str(path)!r} cannot be read: {reason}"
            ) from None
    return LogConfig(
        url,
        password,
        settings.prediction_log_payloads,
        settings.prediction_log_queue_size,
        settings.prediction_log_flush_timeout_s,
    )


def input_digest(inputs: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec]) -> bytes:
    """sha256 over the inputs in the model's order: per input a `name datatype shape` line,
    then its bytes in the binary extension's layout. The same tensors give the same digest
    whether they came as JSON or binary."""
    digest = hashlib.sha256()
    for name, spec in specs.items():
        array = inputs[name]
        shape = ",".join(map(str, array.shape))
        digest.update(f"{name} {spec.datatype} {shape}\n".encode())
        if spec.datatype == "BYTES":
            digest.update(encode_tensor(array, "BYTES"))
        else:
            # Flat: memoryview cannot cast an empty [n, 0] view, and an empty tensor is valid.
            flat = np.ascontiguousarray(array, dtype=spec.dtype).reshape(-1)
            digest.update(flat.data.cast("B"))
    return digest.digest()


class LogEntry:
    """What one request leaves in the log, filled in by the infer handler as it goes."""

    __slots__ = (
        "error",
        "input_bytes",
        "input_sha256",
        "inputs",
        "latency_s",
        "model",
        "output_bytes",
        "outputs",
        "payload_bytes",
        "payloads",
        "request_id",
        "rows",
        "started",
        "status",
        "version",
    )

    def __init__(self, model: str, started: float, payloads: bool) -> None:
        self.model = model
        self.version: str | None = None
        self.started = started  # wall clock, seconds since the epoch
        self.payloads = payloads
        self.status = 500
        self.error: str | None = None
        self.latency_s = 0.0
        self.request_id: str | None = None
        self.rows: int | None = None
        self.input_bytes: int | None = None
        self.output_bytes: int | None = None
        self.input_sha256: bytes | None = None
        self.inputs: list[tuple[str, str, np.ndarray]] | None = None
        self.outputs: list[tuple[str, str, np.ndarray]] | None = None
        self.payload_bytes = 0

    async def add_inputs(
        self,
        request_id: str | None,
        inputs: Mapping[str, np.ndarray],
        specs: Mapping[str, TensorSpec],
    ) -> None:
        """Record a parsed request: its id, rows and input digest (and tensors if kept)."""
        try:
            # Cut before queuing: a queued row holds at most TEXT_LIMIT characters of each.
            self.request_id = _cut(request_id)
            first = next(iter(inputs.values()))
            self.rows = int(first.shape[0]) if first.ndim else None
            size = sum(tensor_bytes(array) for array in inputs.values())
            if size <= INLINE_HASH_BYTES:
                self.input_sha256 = input_digest(inputs, specs)
            else:  # hashlib releases the GIL on large buffers: the event loop keeps running
                self.input_sha256 = await asyncio.to_thread(input_digest, inputs, specs)
            if self.payloads:
                self.inputs = [(name, spec.datatype, inputs[name]) for name, spec in specs.items()]
                self.payload_bytes += size
        except Exception:  # the log must never fail a request: the row goes without them
            _hook_failed()

    def add_outputs(
        self,
        results: Mapping[str, np.ndarray],
        requested: Sequence[RequestedOutput],
        specs: Mapping[str, TensorSpec],
        body_bytes: int,
    ) -> None:
        """Record the answer: its size (and the returned tensors if kept)."""
        self.output_bytes = body_bytes
        if self.payloads:
            try:
                self.outputs = [
                    (out.name, specs[out.name].datatype, results[out.name]) for out in requested
                ]
                self.payload_bytes += sum(tensor_bytes(array) for _, _, array in self.outputs)
            except Exception:  # as in add_inputs
                self.outputs = None
                _hook_failed()

    def finish(
        self, version: str | None, status: int, error: str | None, seconds: float
    ) -> LogEntry:
        self.version = version
        self.status = status
        self.error = _cut(error)
        self.latency_s = seconds
        return self


_hook_failures = 0


def _hook_failed() -> None:
    """A bug in the request path's hooks: logged (the first few times), never raised."""
    global _hook_failures
    _hook_failures += 1
    if _hook_failures <= 3:
        log.exception("inference log: describing a request failed; its row goes without it")


def _tensors(tensors: list[tuple[str, str, np.ndarray]]) -> list[dict[str, object]]:
    described: list[dict[str, object]] = []
    for name, datatype, array in tensors:
        flat = array.reshape(-1)
        data: object
        if datatype == "BYTES":  # jsonb takes no NUL either
            data = [
                _clean(e.decode("utf-8", "replace") if isinstance(e, bytes) else str(e))
                for e in flat
            ]
        else:
            data = np.ascontiguousarray(flat)
        described.append(
            {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}
        )
    return described


def encode_payloads(entries: Sequence[LogEntry]) -> list[str | None]:
    """The `payload` column: the tensors in the protocol's JSON form (runs on a thread)."""
    encoded: list[str | None] = []
    for entry in entries:
        if entry.inputs is None and entry.outputs is None:
            encoded.append(None)
            continue
        document = {
            "inputs": _tensors(entry.inputs or []),
            "outputs": _tensors(entry.outputs or []),
        }
        encoded.append(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    return encoded


def _cut(text: str | None) -> str | None:
    """Client-chosen text as a queued row keeps it: at most TEXT_LIMIT characters."""
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return text[: TEXT_LIMIT - 3] + "..."


def tensor_bytes(array: np.ndarray) -> int:
    """What a kept tensor holds: its buffer, plus each BYTES element's text."""
    if array.dtype.kind != "O":
        return int(array.nbytes)
    return int(array.nbytes) + sum(len(element) for element in array.reshape(-1))


def row_cost(entry: LogEntry) -> int:
    """What a queued row is charged against the queue's byte budget: the memory it holds,
    estimated from its contents (texts at their size as Python strings, kept tensors)."""
    texts = (entry.model, entry.request_id, entry.version, entry.error)
    return ROW_BYTES + sum(sys.getsizeof(t) for t in texts if t is not None) + entry.payload_bytes


def _clean(text: str) -> str:
    """Text PostgreSQL takes (valid UTF-8, no NUL). Clients choose ids, model names and
    tensors: one odd row must not make the database refuse a whole batch."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode()
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _text(text: str) -> str:
    return _clean(text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "...")


def _optional_text(text: str | None) -> str | None:
    return None if text is None else _text(text)


def _connection_problem(exc: BaseException) -> bool:
    """True when the connection, not the rows, is what failed: retry the batch later."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in ("08", "57")  # connection; operator intervention
    # InterfaceError: "connection is closed" and the like; its ValueError kinds are our rows.
    return isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)


# SQLSTATE classes that blame the rows, not the database: data exception, integrity
# constraint violation, program limit exceeded (a value too large to store).
ROW_ERROR_CLASSES = ("22", "23", "54")


def _row_problem(exc: BaseException) -> bool:
    """True when some row of the batch is what the database (or asyncpg, encoding it) refused:
    the other rows can be written without it."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in ROW_ERROR_CLASSES
    # asyncpg encodes the rows itself: a value its column cannot take (2**31 in an integer)
    # raises OverflowError, ValueError (asyncpg.DataError) or TypeError before anything is sent.
    return isinstance(exc, ValueError | TypeError | ArithmeticError)


def _idle(connection: asyncpg.Connection) -> bool:
    return not connection.is_closed() and not connection.is_in_transaction()


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
        return LogEntry(_cut(model) or "", started, self._payloads)

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
                if _row_problem(exc):
                    # The connection is kept for the halves when the failed COPY left it idle.
                    connection = self._connection
                    if connection is None or not _idle(connection):
                        await self._disconnect()
                    self._isolate(exc)
                    continue
                await self._disconnect()
                self._attempts += 1
                if _connection_problem(exc):
                    self._report("lost the database connection while writing", exc)
                    continue  # reconnect (with backoff if that fails) and retry the batch
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
            backoff = BACKOFF_FIRST_S
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
        server_id, seq = self.server_id, self._seq
        # Ids for requests without one: 128 random bits as 32 hex digits (uuid4() costs 10x).
        fresh = os.urandom(16 * count).hex()
        # Each row keeps the cost it was charged when queued, released when it leaves.
        rows = [
            (
                server_id,
                seq + n,
                datetime.fromtimestamp(entry.started, UTC),
                _text(entry.request_id) if entry.request_id else fresh[32 * n : 32 * n + 32],
                _text(entry.model),
                _optional_text(entry.version),
                entry.status,
                _optional_text(entry.error),
                entry.latency_s * 1000.0,
                entry.rows,
                entry.input_bytes,
                entry.output_bytes,
                entry.input_sha256,
                payload,
            )
            for n, (entry, payload) in enumerate(zip(entries, payloads, strict=True))
        ]
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
        why = _why(exc)
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
        why = _why(exc)
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


async def write_rows(
    connection: asyncpg.Connection | None, rows: Sequence[tuple[Any, ...]], retry: bool
) -> None:
    """COPY rows (tuples in COLUMNS order) into the log. `retry`: an earlier attempt may
    have committed, so only the rows not in the table yet are added."""
    assert connection is not None
    if not retry:  # fresh rows: none of their keys can be in the table yet
        await connection.copy_records_to_table(TABLE, records=rows, columns=COLUMNS)
        return
    columns = ", ".join(COLUMNS)
    async with connection.transaction():
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {RETRY_TABLE} (LIKE {TABLE}) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table(RETRY_TABLE, records=rows, columns=COLUMNS)
        await connection.execute(
            f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {RETRY_TABLE} "
            "ON CONFLICT DO NOTHING"
        )


async def migrate(connection: asyncpg.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION (idempotent; concurrent servers take turns).
    Returns the version the database is at afterwards."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        # Look before creating: a role without CREATE on the schema can still log into
        # tables that exist.
        if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{TABLE}_schema"):
            await connection.execute(
                f"CREATE TABLE {TABLE}_schema ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        current = await connection.fetchval(f"SELECT coalesce(max(version), 0) FROM {TABLE}_schema")
        for version, statements in MIGRATIONS:
            if version > current:
                await connection.execute(statements)
                await connection.execute(
                    f"INSERT INTO {TABLE}_schema (version) VALUES ($1)", version
                )
        return max(int(current), SCHEMA_VERSION)
