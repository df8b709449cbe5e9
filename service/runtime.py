"""ONNX Runtime sessions: one per model version, created once, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from service.errors import BadRequest, ServerFault
from service.repository import ModelSource, file_sha256
from service.tensors import DATATYPES_BY_ORT_TYPE, TensorSpec

log = logging.getLogger(__name__)
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ModelLoadError(RuntimeError):
    """A model file cannot be loaded by ONNX Runtime; the message names the file."""


def first_line(exc: BaseException) -> str:
    """ORT messages can span lines; logs and error bodies want one."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class LoadedModel:
    """One model version with its session and signature."""

    name: str
    version: str
    session: Any  # onnxruntime.InferenceSession (untyped)
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    providers: list[str]
    sha256: str = ""  # of the model file's bytes, read once at load (repository index, /config)

    @property
    def batchable(self) -> bool:
        """True when every input and output has a variable first (batch) dimension."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return all(spec.shape and spec.shape[0] == -1 for spec in specs)

    def run(self, feeds: dict[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        """Run the session (blocking; call from the inference thread pool)."""
        try:
            return list(self.session.run(list(output_names), feeds))
        except Exception as exc:  # ORT raises its own untyped exception classes
            message = first_line(exc)
            error = BadRequest if type(exc).__name__ == "InvalidArgument" else ServerFault
            level = logging.INFO if error is BadRequest else logging.ERROR
            log.log(level, "inference: %s", message)
            raise error(f"inference failed: {message}") from None


def quiet_onnxruntime_logs(log_level: str) -> None:
    """ORT writes its own lines to stderr (bypassing JSON logs): keep only its errors,
    or its warnings too at LOG_LEVEL=debug. Our logs name any provider fallback."""
    ort.set_default_logger_severity(2 if log_level == "debug" else 3)


def choose_providers(requested: Sequence[str]) -> list[str]:
    """Keep the requested providers this build of ONNX Runtime offers, CPU always last."""
    if CUDA in requested and hasattr(ort, "preload_dlls"):
        # CUDA/cuDNN from pip wheels (nvidia-*) load only after this call.
        try:
            ort.preload_dlls()
        except Exception as exc:  # no CUDA libraries: the session falls back below
            log.debug("onnxruntime.preload_dlls() failed: %s", exc)
    available = set(ort.get_available_providers())
    chosen = [name for name in requested if name in available and name != CPU]
    for name in requested:
        if name not in available:
            log.warning(
                "%s was requested but is not in this onnxruntime build; falling back to %s",
                name,
                ", ".join([*chosen, CPU]),
            )
    return [*chosen, CPU]


def session_options(intra_op_threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads would otherwise spin and steal CPU from the HTTP event loop.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _specs(node_args: Sequence[Any], source: ModelSource, kind: str) -> dict[str, TensorSpec]:
    specs: dict[str, TensorSpec] = {}
    for arg in node_args:
        datatype = DATATYPES_BY_ORT_TYPE.get(arg.type)
        if datatype is None:
            raise ModelLoadError(
                f"model file {source.path}: {kind} '{arg.name}' is {arg.type}, not a tensor "
                "this server serves; "
                + (
                    "export it as a tensor (skl2onnx: options={'zipmap': False} for classifiers)"
                    if not str(arg.type).startswith("tensor(")
                    else "cast it to a supported element type in the model"
                )
            )
        shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
        specs[arg.name] = TensorSpec(arg.name, datatype, shape)
    return specs


def load_model(source: ModelSource, providers: Sequence[str], intra_op_threads: int) -> LoadedModel:
    """Create the session for one model file and report the providers it really uses."""
    try:
        # Hashed before ORT reads it, once per process: the identity the index and logs show.
        sha256 = source.sha256 or file_sha256(source.path)
        session = ort.InferenceSession(
            str(source.path), session_options(intra_op_threads), providers=list(providers)
        )
    except Exception as exc:
        raise ModelLoadError(
            f"model file {source.path} cannot be loaded: {first_line(exc)}"
        ) from None
    actual = list(session.get_providers())
    if CUDA in providers and CUDA not in actual:
        log.warning(
            "CUDA was requested for model %s but is unusable here; falling back to %s",
            source.name,
            ", ".join(actual),
        )
    inputs = _specs(session.get_inputs(), source, "input")
    outputs = _specs(session.get_outputs(), source, "output")
    log.info(
        "loaded model %s version %s from %s (sha256 %s): providers %s, %d intra-op threads",
        source.name,
        source.version,
        source.path,
        sha256,
        ", ".join(actual),
        intra_op_threads,
    )
    return LoadedModel(
        name=source.name,
        version=source.version,
        session=session,
        inputs=inputs,
        outputs=outputs,
        providers=actual,
        sha256=sha256,
    )


# A run predicted to take at most this long runs on the event loop itself (see
# InferenceExecutor): the loop is blocked no longer than a few socket reads would take.
INLINE_MAX_S = 0.002
_KNOWN_SHAPES = 256  # run times remembered per model, by batch size


class InferenceExecutor:
    """Session runs off the event loop, on `workers` dedicated threads; short runs inline.

    The hop to a thread and back costs 25-60 µs of CPU (a queue, a wake-up of the loop, two
    context switches): about a tenth of a batch-1 request to a small model. So with one
    worker, a run whose last run at the same batch size took at most INLINE_MAX_S, while no
    other run is on the thread, runs inline: the loop waits less than the hop would cost it
    to stay free. Anything longer, and anything while a run is busy, goes to the thread, so
    health checks and other connections never wait behind a long run.
    """

    def __init__(self, workers: int, inline: bool | None = None) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"inference_{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        self._inline = workers == 1 if inline is None else inline
        self._busy = 0  # runs on the threads now
        self._seconds: dict[tuple[int, int], float] = {}  # (model, rows) -> last run time

    async def run_short_inline(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> list[np.ndarray]:
        """`run`, or inline when that is cheaper and safe (see the class)."""
        key = _run_key(model, feeds)
        last = self._seconds.get(key, INLINE_MAX_S + 1.0)  # never seen: the thread
        if self._inline and not self._busy and last <= INLINE_MAX_S:
            started = time.perf_counter()
            try:
                return model.run(feeds, output_names)
            finally:
                self._remember(key, time.perf_counter() - started)
        return await self.run(model, feeds, output_names)

    async def run(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> list[np.ndarray]:
        """One session run on an inference thread."""
        key = _run_key(model, feeds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[np.ndarray], float]] = loop.create_future()
        self._busy += 1
        try:
            self._queue.put(_Job(loop, future, model, feeds, output_names))
            results, seconds = await future
        finally:
            self._busy -= 1
        self._remember(key, seconds)
        return results

    def _remember(self, key: tuple[int, int], seconds: float) -> None:
        if key in self._seconds or len(self._seconds) < _KNOWN_SHAPES:
            self._seconds[key] = seconds

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            started = time.perf_counter()
            outcome: object
            try:
                results = job.model.run(job.feeds, job.output_names)
                outcome = (results, time.perf_counter() - started)
            except BaseException as exc:  # delivered to the awaiting request
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                job.loop.call_soon_threadsafe(_deliver, job.future, outcome)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def _run_key(model: LoadedModel, feeds: dict[str, np.ndarray]) -> tuple[int, int]:
    """Run times are remembered per model and batch size (first dimension)."""
    first = next(iter(feeds.values()), None)
    return id(model), int(first.shape[0]) if first is not None and first.ndim else -1


@dataclass(frozen=True, slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[list[np.ndarray], float]]
    model: LoadedModel
    feeds: dict[str, np.ndarray]
    output_names: Sequence[str]


def _deliver(future: asyncio.Future[tuple[list[np.ndarray], float]], outcome: object) -> None:
    if future.done():  # cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
