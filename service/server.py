"""Load the models, then serve them with uvicorn until SIGTERM or SIGINT.

:func:`serve_process` is one server process: the only one, or with ``WORKERS`` > 1 one of
the processes that service/workers.py supervises on a shared port.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from service.app import ServerState, create_app
from service.cpus import usable_cpu_count
from service.http import protocol_class
from service.inference_log import InferenceLog
from service.metrics import ServerMetrics
from service.registry import ModelRegistry, make_served_model
from service.repository import ModelSourceError, discover_models
from service.runtime import (
    InferenceExecutor,
    ModelLoadError,
    choose_providers,
    load_model,
    quiet_onnxruntime_logs,
)
from service.settings import Settings

log = logging.getLogger("service")


def intra_op_threads(settings: Settings) -> int:
    """INTRA_OP_THREADS, or this process's share of the usable CPUs."""
    shares = max(1, settings.workers) * settings.inference_workers  # WORKERS=auto: resolved
    return settings.intra_op_threads or max(1, usable_cpu_count() // shares)


def build_state(settings: Settings, metrics: ServerMetrics | None = None) -> ServerState:
    """Find and load every model (raises ModelSourceError / ModelLoadError)."""
    threads = intra_op_threads(settings)
    quiet_onnxruntime_logs(settings.log_level)
    providers = choose_providers(settings.execution_providers)
    models = [load_model(source, providers, threads) for source in discover_models(settings)]
    executor = InferenceExecutor(settings.inference_workers)
    names = [model.name for model in models]
    if metrics is None:
        metrics = ServerMetrics(names)
    elif unknown := set(names) - set(metrics.labels()):
        # A worker's metrics block was laid out for the models the supervisor found.
        raise ModelSourceError(f"model {sorted(unknown)[0]!r} appeared after the server started")
    served = [make_served_model(model, settings, executor, metrics) for model in models]
    inference_log = (
        InferenceLog.from_settings(settings, metrics) if settings.prediction_log_url else None
    )
    return ServerState(settings, ModelRegistry(served), executor, metrics, inference_log)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal it shut down for once it has stopped gracefully; the
    default actions would exit 143 (SIGTERM) or raise KeyboardInterrupt (SIGINT)."""


class _Server(uvicorn.Server):
    """uvicorn's server, telling `on_started` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def serve_process(
    settings: Settings,
    metrics: ServerMetrics | None = None,
    sock: socket.socket | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """One server process: on `sock` (a worker's shared socket) or on HOST:PORT."""
    try:
        state = build_state(settings, metrics)
    except (ModelSourceError, ModelLoadError) as exc:
        log.error("%s", exc)
        return 1
    app = create_app(state)
    config = uvicorn.Config(
        # Stated as a factory: otherwise uvicorn calls the app with no arguments to find out
        # whether it is one, which only a strict __call__ signature answers correctly.
        lambda: app,
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop when installed
        http=protocol_class(settings),  # httptools, with our header limits and timeouts
        interface="asgi3",  # stated, not guessed from how __call__ is written
        ws="none",
        log_config=None,  # keep the logging configured by the caller
        access_log=settings.log_level == "debug",
        server_header=False,
        proxy_headers=False,  # nothing here reads the client address
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = _Server(config, on_started)
    # Set only now: Ctrl-C while models load should still stop at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)
    server.run(sockets=[sock] if sock is not None else None)
    return 0 if server.started else 1
