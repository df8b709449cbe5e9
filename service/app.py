"""HTTP endpoints of the Open Inference Protocol v2.

Inference requests, nearly all the traffic, never enter FastAPI: ``ServerApp.__call__`` hands
a POST to an ``.../infer`` path straight to ``InferEndpoint``, a bare ASGI handler (raw body
in, orjson and numpy for parsing and encoding, raw bytes out), so no routing, middleware,
Request or Response objects run per request. FastAPI serves everything else (metadata,
health, metrics, the OpenAPI document, and 404/405). Every error is ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service import __version__
from service.batching import check_hard_cap
from service.binary import HEADER_LENGTH_HEADER
from service.encoding import decode_body, encode_body, response_coding
from service.errors import ApiError, BadRequest, ServerFault, error_body, unexpected
from service.inference_log import InferenceLog, LogEntry
from service.limits import AdmissionGate, read_body
from service.metrics import ServerMetrics
from service.model_config import model_config, model_metadata
from service.openapi import INFER_PATHS, install_openapi
from service.protocol import (
    EncodedResponse,
    InferenceRequest,
    encode_inference_response,
    parse_inference_request,
)
from service.registry import ModelRegistry, ServedModel
from service.runtime import InferenceExecutor
from service.settings import Settings

log = logging.getLogger(__name__)
SERVER_NAME = "onnx-serving"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
ModelHandler = Callable[[str, "str | None"], Response]
MODELS_PREFIX = "/v2/models/"
INFER_SUFFIX = "/infer"
JSON_TYPE = b"application/json"
HEADER_LENGTH_NAME = HEADER_LENGTH_HEADER.encode()  # as ASGI gives header names: lower case
DECODED_BUDGET_FACTOR = 2
INLINE_PARSE_BYTES = 256 * 1024  # larger bodies are parsed, larger results encoded, on a thread
CLIENT_GONE = 499  # nginx's "client closed request": no reply was sent
CLIENT_GONE_ERROR = "client closed the connection before the reply was sent"


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
    return Response(error_body(message), status, headers, media_type="application/json")


class ServerApp(FastAPI):
    """FastAPI, except that inference requests go straight to their endpoint."""

    infer_endpoint: InferEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.infer_endpoint
        if endpoint is not None and scope["type"] == "http" and scope["method"] == "POST":
            target = infer_target(scope["path"])
            if target is not None:
                await endpoint(scope, receive, send, *target)
                return
        await super().__call__(scope, receive, send)


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) of an infer path, as its route would match it; else None."""
    if not (path.startswith(MODELS_PREFIX) and path.endswith(INFER_SUFFIX)):
        return None
    parts = path[len(MODELS_PREFIX) : -len(INFER_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def create_app(state: ServerState) -> FastAPI:
    """Build the application around already-loaded models."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("ready: serving %d model version(s)", len(state.registry.all()))
        if state.inference_log is not None:
            state.inference_log.start()  # connects in the background: never delays readiness
        # Startup's objects (sessions, modules, routes) never die: keep the collector from
        # walking them again on every full collection.
        gc.freeze()
        yield
        # uvicorn has already let every in-flight request finish when this runs.
        for served in state.registry.all():
            await served.runner.stop()
        state.executor.shutdown()
        if state.inference_log is not None:
            await state.inference_log.close()  # flushes, for PREDICTION_LOG_FLUSH_TIMEOUT_S
        log.info("stopped")

    app = ServerApp(
        title="ONNX Runtime inference server",
        version=__version__,
        description="Open Inference Protocol v2 (KServe/Triton REST) with binary tensor data.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _add_server_routes(app, state)
    _add_model_routes(app, state)
    app.infer_endpoint = InferEndpoint(state)
    _add_infer_routes(app, app.infer_endpoint)
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
        return error_response(BadRequest.status, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def server_fault(_: Request, exc: Exception) -> Response:
        log.exception("unexpected server error")
        fault = unexpected(exc)
        return error_response(fault.status, fault.message)


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

    hard_cap = state.settings.max_batch_size is not None

    def config(model_name: str, model_version: str | None) -> Response:
        return json_response(model_config(registry.get(model_name, model_version), hard_cap))

    # Triton's repository index (read-only: models load at startup, never through the API), so
    # clients can discover what is served without knowing the model names.
    @app.post("/v2/repository/index", summary="Served models and versions")
    async def repository_index() -> Response:
        return json_response(
            [
                {"name": s.name, "version": s.version, "state": "READY", "sha256": s.model.sha256}
                for s in registry.all()
            ]
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


def _add_infer_routes(app: FastAPI, endpoint: InferEndpoint) -> None:
    """The infer paths in the route table too: for 405 on other methods, and for requests
    that reach the router (ServerApp.__call__ takes the others first)."""

    for path in INFER_PATHS:
        app.router.routes.append(Route(path, _RoutedInfer(endpoint), methods=["POST"]))


class _RoutedInfer:
    """The endpoint as a plain ASGI app (Starlette would wrap a function in a Request)."""

    def __init__(self, endpoint: InferEndpoint) -> None:
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        model, version = params["model_name"], params.get("model_version")
        await self._endpoint(scope, receive, send, model, version)


def reply_delivered(send: Send) -> bool:
    """False when the connection was gone before the reply was written. uvicorn's `send` is
    its request cycle's bound method, whose `disconnected` says so (then it drops the reply
    without a word); any other server's is taken at its word."""
    return not getattr(getattr(send, "__self__", None), "disconnected", False)


class InferEndpoint:
    """``POST .../infer`` as a bare ASGI handler: admission, body, parse, run, encode,
    metrics and the inference log, with nothing per request that could be done once."""

    def __init__(self, state: ServerState) -> None:
        self._registry = state.registry
        self._metrics = state.metrics
        self._log = state.inference_log
        self._gate = AdmissionGate(state.settings.max_inflight)
        self._max_body = state.settings.max_body_bytes
        self._body_timeout = state.settings.body_timeout_s
        self._hard_cap = state.settings.max_batch_size is not None  # set, not the default
        # What one request's tensors may decode to (docs/LIMITS.md).
        self._budget = DECODED_BUDGET_FACTOR * state.settings.max_body_bytes

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        entry = self._log.entry(model, time.time()) if self._log is not None else None
        served: ServedModel | None = None
        status, error = ServerFault.status, None
        body, headers = b"", [(b"content-type", JSON_TYPE)]
        try:
            served = self._registry.get(model, version)
            self._gate.enter()
            self._metrics.add_in_flight(1)
            try:
                body, headers = await self._infer(scope, receive, served, entry)
            finally:
                self._gate.leave()
                self._metrics.add_in_flight(-1)
            status = 200
        except ApiError as exc:
            status, error = exc.status, exc.message
            body = error_body(error)
            headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        except Exception as exc:
            log.exception("unexpected server error")
            fault = unexpected(exc)
            status, error = fault.status, fault.message
            body = error_body(error)
        elapsed = time.perf_counter() - started
        headers.append((b"content-length", b"%d" % len(body)))
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            # Counted as what happened: a success that went nowhere is not a 200 (a failure
            # keeps its own status, e.g. the 400 of a client that hung up mid-body).
            if status < 400 and not reply_delivered(send):
                status, error = CLIENT_GONE, CLIENT_GONE_ERROR
            self._metrics.observe_request(served.name if served else None, status, elapsed)
            if entry is not None and self._log is not None:
                shown_version = served.version if served else version
                self._log.submit(entry.finish(shown_version, status, error, elapsed))

    def _parse(
        self, body: bytes, coding: str | None, lengths: dict[str, str], served: ServedModel
    ) -> InferenceRequest:
        if coding is not None:
            body = decode_body(body, coding, self._max_body)
        model = served.model
        return parse_inference_request(
            body, lengths, model.inputs, model.outputs, budget=self._budget
        )

    async def _infer(
        self, scope: Scope, receive: Receive, served: ServedModel, entry: LogEntry | None
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        declared = header_length = coding = accept = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == HEADER_LENGTH_NAME:
                header_length = value.decode("latin-1")
            elif name == b"content-encoding":
                coding = value.decode("latin-1")
            elif name == b"accept-encoding":
                accept = value.decode("latin-1")
        model = served.model
        # Read under the in-flight slot: MAX_INFLIGHT also bounds the memory held by bodies.
        body = await read_body(receive, declared, self._max_body, self._body_timeout)
        if entry is not None:
            entry.input_bytes = len(body)
        lengths = {} if header_length is None else {HEADER_LENGTH_HEADER: header_length}
        if len(body) <= INLINE_PARSE_BYTES and coding is None:
            parsed = self._parse(body, coding, lengths, served)
        else:  # inflating and decoding take long: never on the event loop
            parsed = await asyncio.to_thread(self._parse, body, coding, lengths, served)
        del body  # the arrays may view it; otherwise it can go before the run
        if entry is not None:
            await entry.add_inputs(parsed.id, parsed.inputs, model.inputs)
        names = [output.name for output in parsed.outputs]
        if self._hard_cap and served.max_batch_size:
            check_hard_cap(parsed.inputs, served.max_batch_size, model.name)
        results = await served.runner.infer(parsed.inputs, names)
        answer_coding = response_coding(accept) if accept is not None else None
        if sum(result.nbytes for result in results.values()) <= INLINE_PARSE_BYTES:
            encoded, response = _encode(served, parsed, results, answer_coding)
        else:  # encoding and compressing take long too
            encoded, response = await asyncio.to_thread(
                _encode, served, parsed, results, answer_coding
            )
        if entry is not None:
            entry.add_outputs(results, parsed.outputs, model.outputs, len(encoded.body))
        headers = [(b"content-type", encoded.media_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in encoded.headers.items()]
        if answer_coding is not None:
            headers.append((b"content-encoding", answer_coding.encode()))
            headers.append((b"vary", b"accept-encoding"))
        return response, headers


def _encode(
    served: ServedModel,
    parsed: InferenceRequest,
    results: Mapping[str, np.ndarray],
    coding: str | None,
) -> tuple[EncodedResponse, bytes]:
    """The response, and its body as sent (compressed when `coding` says so)."""
    model = served.model
    encoded = encode_inference_response(model.name, model.version, parsed, results, model.outputs)
    return encoded, encoded.body if coding is None else encode_body(encoded.body, coding)
