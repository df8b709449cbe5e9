"""A request's row: what the infer handler records as it goes, what a queued row is charged
against the queue's byte budget, and the row as the table takes it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from service.binary import encode_tensor
from service.json_tensors import json_data
from service.protocol import RequestedOutput
from service.tensors import TensorSpec

# One logger for the whole inference log, named as operators filter its lines.
log = logging.getLogger("service.inference_log")

ROW_BYTES = 1024  # a row's objects besides its texts and tensors (measured: under 700 bytes)
INLINE_HASH_BYTES = 256 * 1024  # larger inputs are hashed on a thread, off the event loop
TEXT_LIMIT = 2000  # error texts, client-chosen ids and names are cut to this many characters


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
            self.request_id = cut_text(request_id)
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
        self.error = cut_text(error)
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
    """Tensors as a response writes them (flat data), their texts as jsonb takes them."""
    described: list[dict[str, object]] = []
    for name, datatype, array in tensors:
        data = json_data(array, datatype)
        if isinstance(data, list):  # BYTES: jsonb takes no NUL either
            data = [_clean(text) for text in data]
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


def cut_text(text: str | None) -> str | None:
    """Client-chosen text as a queued row keeps it: at most TEXT_LIMIT characters."""
    return None if text is None else _shortened(text)


def _shortened(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "..."


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
    return _clean(_shortened(text))


def _optional_text(text: str | None) -> str | None:
    return None if text is None else _text(text)


def table_rows(
    entries: Sequence[LogEntry],
    payloads: Sequence[str | None],
    server_id: uuid.UUID,
    first_seq: int,
) -> list[tuple[Any, ...]]:
    """The rows of `entries` (with their encoded payloads) in the table's column order
    (schema.COLUMNS), numbered from `first_seq`."""
    # Ids for requests without one: 128 random bits as 32 hex digits (uuid4() costs 10x).
    fresh = os.urandom(16 * len(entries)).hex()
    return [
        (
            server_id,
            first_seq + n,
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
