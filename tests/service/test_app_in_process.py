"""The HTTP endpoints in process, around a runner that fails the way no test model can: with an
exception that is not one of the server's errors (a bug, or a library raising something
unexpected). The client gets a 500, and the metrics count a 500, so 5xx alerts see it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import httpx
import numpy as np
import orjson
import pytest

from service.app import ServerState, create_app, infer_target
from service.batching import DirectRunner
from service.metrics import ServerMetrics
from service.registry import ModelRegistry, ServedModel
from service.repository import ModelSource
from service.runtime import CPU, InferenceExecutor, load_model
from service.settings import Settings
from tests.service.model_factory import DEFAULT_MODEL

BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]}
)


class BrokenRunner:
    async def infer(
        self, feeds: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        raise RuntimeError("a bug")

    async def stop(self) -> None:
        return None


def sample(metrics_text: str, name: str, labels: str = "") -> float:
    selector = r"\{" + re.escape(labels) + r"\}" if labels else ""
    match = re.search(rf"^{re.escape(name)}{selector} (\S+)$", metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_an_unexpected_error_is_a_500_and_counted_as_one() -> None:
    model = load_model(ModelSource("mlp", "1", DEFAULT_MODEL), [CPU], 1)
    served = ServedModel(model, BrokenRunner(), 0, 0.0)
    executor = InferenceExecutor(1)
    state = ServerState(Settings(), ModelRegistry([served]), executor, ServerMetrics())
    app = create_app(state)

    async def exchange() -> tuple[httpx.Response, str]:
        # Starlette re-raises after answering, for the server to log; the client has its 500.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            response = await client.post("/v2/models/mlp/infer", content=BODY)
            return response, (await client.get("/metrics")).text

    response, metrics = asyncio.run(exchange())
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error: RuntimeError"}
    assert sample(metrics, "inference_requests_total", 'model="mlp",status="500"') == 1
    assert sample(metrics, "inference_requests_total", 'model="mlp",status="200"') == 0
    assert sample(metrics, "inference_requests_in_flight") == 0


def test_the_router_serves_infer_paths_as_the_fast_path_does() -> None:
    # ServerApp takes infer requests before routing; the route table has them too (for 405s,
    # and for whatever reaches the router, e.g. an app mounted under a prefix).
    model = load_model(ModelSource("mlp", "1", DEFAULT_MODEL), [CPU], 1)
    executor = InferenceExecutor(1)
    metrics = ServerMetrics()
    served = ServedModel(model, DirectRunner(model, executor, metrics), 0, 0.0)
    app = create_app(ServerState(Settings(), ModelRegistry([served]), executor, metrics))

    async def both() -> list[list[httpx.Response]]:
        # One lifespan for both: its end shuts the inference threads down.
        answers = []
        async with app.router.lifespan_context(app):
            for asgi_app in (app, app.router):
                transport = httpx.ASGITransport(app=asgi_app)
                async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                    answers.append(
                        [
                            await client.post(path, content=BODY)
                            for path in (
                                "/v2/models/mlp/infer",
                                "/v2/models/mlp/versions/1/infer",
                                "/v2/models/mlp/versions/7/infer",  # no such version
                            )
                        ]
                    )
        return answers

    fast, routed = asyncio.run(both())
    assert [r.status_code for r in routed] == [r.status_code for r in fast] == [200, 200, 404]
    assert {r.headers["content-type"] for r in fast + routed} == {"application/json"}
    assert [r.json() for r in routed] == [r.json() for r in fast]
    assert routed[1].json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/v2/models/mlp/infer", ("mlp", None)),
        ("/v2/models/mlp/versions/2/infer", ("mlp", "2")),
        ("/v2/models/mlp/ready", None),  # ends like no infer path: routed, 405 for a POST
        ("/v2/models/mlp/versions/2/ready", None),
        ("/v2/infer", None),
        ("/v2/models//infer", None),
        ("/v2/models/mlp/versions//infer", None),
        ("/v2/models/mlp/other/2/infer", None),
    ],
)
def test_only_infer_paths_take_the_fast_path(
    path: str, target: tuple[str, str | None] | None
) -> None:
    assert infer_target(path) == target
