"""HTTP endpoints of the Open Inference Protocol v2 (FastAPI for routing and OpenAPI).

The inference path avoids Pydantic and per-element Python work: raw body in, orjson and
numpy for parsing and encoding, plain ``Response`` out. Every error is ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from service import __version__
from service.errors import ApiError
from service.inference_log import InferenceLog, LogEntry
from service.limits import AdmissionGate, read_body
from service.metrics import ServerMetrics
from service.model_config import model_config, model_metadata
from service.openapi import INFER_PATHS, install_openapi
from service.protocol import encode_inference_response, parse_inference_request
from service.registry import ModelRegistry, ServedModel
from service.runtime import InferenceExecutor
from service.settings import Settings

log = logging.getLogger(__name__)
SERVER_NAME = "onnx-serving"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
ModelHandler = Callable[[str, "str | None"], Response]


@dataclass
class ServerState:
    """Everything the endpoints share; models are loaded before the app is built."""

    settings: Settings
    registry: ModelRegistry
    executor: InferenceExecutor
    metrics: ServerMetrics
    inference_log: InferenceLog | None = None  # PREDICTION_LOG_URL set


def json_response(
    content: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def create_app(state: ServerState) -> FastAPI:
    """Build the FastAPI application around already-loaded models."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("ready: serving %d model version(s)", len(state.registry.all()))
        if state.inference_log is not None:
            state.inference_log.start()  # connects in the background: never delays readiness
        yield
        # uvicorn has already let every in-flight request finish when this runs.
        for served in state.registry.all():
            await served.runner.stop()
        state.executor.shutdown()
        if state.inference_log is not None:
            await state.inference_log.close()  # flushes, for PREDICTION_LOG_FLUSH_TIMEOUT_S
        log.info("stopped")

    app = FastAPI(
        title="ONNX Runtime inference server",
        version=__version__,
        description="Open Inference Protocol v2 (KServe/Triton REST) with binary tensor data.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _add_server_routes(app, state)
    _add_model_routes(app, state)
    _add_infer_routes(app, state)
    install_openapi(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}" for err in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def server_fault(_: Request, exc: Exception) -> Response:
        log.exception("unexpected server error")
        return error_response(500, f"internal server error: {type(exc).__name__}")


def _add_server_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}
        )

    @app.get("/v2/health/live", summary="Liveness")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", summary="Readiness: all models loaded")
    async def ready() -> Response:
        return json_response({"ready": True})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)


def _add_model_routes(app: FastAPI, state: ServerState) -> None:
    registry = state.registry

    def metadata(model_name: str, model_version: str | None) -> Response:
        served = registry.get(model_name, model_version)
        return json_response(model_metadata(served.model, registry.versions(served.name)))

    def readiness(model_name: str, model_version: str | None) -> Response:
        served = registry.get(model_name, model_version)
        return json_response({"name": served.name, "version": served.version, "ready": True})

    def config(model_name: str, model_version: str | None) -> Response:
        return json_response(model_config(registry.get(model_name, model_version)))

    # Triton's repository index (read-only: models load at startup, never through the API), so
    # clients can discover what is served without knowing the model names.
    @app.post("/v2/repository/index", summary="Served models and versions")
    async def repository_index() -> Response:
        return json_response(
            [{"name": s.name, "version": s.version, "state": "READY"} for s in registry.all()]
        )

    for suffix, handler, summary in (
        ("", metadata, "Model metadata"),
        ("/ready", readiness, "Model readiness"),
        ("/config", config, "Triton-style model configuration"),
    ):
        _add_model_get(app, suffix, handler, summary)


def _add_model_get(app: FastAPI, suffix: str, handler: ModelHandler, summary: str) -> None:
    async def latest(model_name: str) -> Response:
        return handler(model_name, None)

    async def versioned(model_name: str, model_version: str) -> Response:
        return handler(model_name, model_version)

    app.add_api_route(f"/v2/models/{{model_name}}{suffix}", latest, summary=summary)
    app.add_api_route(
        f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}",
        versioned,
        summary=f"{summary} (one version)",
    )


def _add_infer_routes(app: FastAPI, state: ServerState) -> None:
    gate = AdmissionGate(state.settings.max_inflight)
    metrics = state.metrics
    inference_log = state.inference_log

    async def infer(request: Request, model_name: str, model_version: str | None) -> Response:
        started = time.perf_counter()
        entry = inference_log.entry(model_name, time.time()) if inference_log else None
        served: ServedModel | None = None
        status = 500
        error: str | None = None
        try:
            served = state.registry.get(model_name, model_version)
            gate.enter()
            metrics.in_flight.inc()
            try:
                response = await _run_inference(request, state.settings, served, entry)
            finally:
                gate.leave()
                metrics.in_flight.dec()
            status = 200
            return response
        except ApiError as exc:
            status, error = exc.status, exc.message
            raise
        except Exception as exc:
            error = f"internal server error: {type(exc).__name__}"
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe_request(served.name if served else None, status, elapsed)
            if inference_log is not None and entry is not None:
                version = served.version if served else model_version
                inference_log.submit(entry.finish(version, status, error, elapsed))

    async def infer_endpoint(request: Request) -> Response:
        params = request.path_params
        return await infer(request, params["model_name"], params.get("model_version"))

    # Plain Starlette routes: FastAPI's per-request dependency machinery costs more than
    # the whole protocol parsing of a small request. They are documented in openapi.py,
    # and go first in the route table because they are by far the most requested.
    for path in reversed(INFER_PATHS):
        app.router.routes.insert(0, Route(path, infer_endpoint, methods=["POST"]))


async def _run_inference(
    request: Request, settings: Settings, served: ServedModel, entry: LogEntry | None
) -> Response:
    model = served.model
    # Read under the in-flight slot: MAX_INFLIGHT also bounds the memory held by bodies.
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
    if entry is not None:
        entry.input_bytes = len(body)
    parsed = parse_inference_request(body, request.headers, model.inputs, model.outputs)
    if entry is not None:
        await entry.add_inputs(parsed.id, parsed.inputs, model.inputs)
    results = await served.runner.infer(parsed.inputs, [output.name for output in parsed.outputs])
    encoded = encode_inference_response(model.name, model.version, parsed, results, model.outputs)
    if entry is not None:
        entry.add_outputs(results, parsed.outputs, model.outputs, len(encoded.body))
    return Response(encoded.body, headers=encoded.headers, media_type=encoded.media_type)
