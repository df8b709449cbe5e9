"""Load the models, then serve them with uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from service.app import ServerState, create_app
from service.cpus import usable_cpu_count
from service.inference_log import InferenceLog
from service.metrics import ServerMetrics
from service.registry import ModelRegistry, serve_model
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


def build_state(settings: Settings) -> ServerState:
    """Find and load every model (raises ModelSourceError / ModelLoadError)."""
    workers = settings.inference_workers
    threads = settings.intra_op_threads or max(1, usable_cpu_count() // workers)
    quiet_onnxruntime_logs(settings.log_level)
    providers = choose_providers(settings.execution_providers)
    models = [load_model(source, providers, threads) for source in discover_models(settings)]
    executor, metrics = InferenceExecutor(workers), ServerMetrics()
    served = [serve_model(model, settings, executor, metrics) for model in models]
    inference_log = (
        InferenceLog.from_settings(settings, metrics.registry)
        if settings.prediction_log_url
        else None
    )
    return ServerState(settings, ModelRegistry(served), executor, metrics, inference_log)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal it shut down for once it has stopped gracefully; the
    default actions would exit 143 (SIGTERM) or raise KeyboardInterrupt (SIGINT)."""


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; the process exit code (1: a model could not be loaded)."""
    try:
        state = build_state(settings)
    except (ModelSourceError, ModelLoadError) as exc:
        log.error("%s", exc)
        return 1
    config = uvicorn.Config(
        create_app(state),
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        log_config=None,  # keep the logging configured by the caller
        access_log=settings.log_level == "debug",
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = uvicorn.Server(config)
    # Set only now: Ctrl-C while models load should still stop at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)
    server.run()
    return 0 if server.started else 1
