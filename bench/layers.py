"""Where a request's CPU goes inside the server, without sockets: `python -m bench.layers`.

For each batch size and wire format it times, in this one process on one core, the model run
alone, the protocol parse and encode (service.protocol), and the whole FastAPI application
driven through ASGI — so `app - run - parse - encode` is the framework's own cost. CPU time
(`time.process_time`, best of 5 repeats) keeps the numbers steady on a busy machine. Run it
pinned like the servers: `taskset -c 0 .venv/bin/python -m bench.layers`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import formats, workload
from bench.formats import Request, RequestFormat
from service.app import DECODED_BUDGET_FACTOR, create_app
from service.protocol import encode_inference_response, parse_inference_request
from service.server import build_state
from service.settings import load_settings

REPEATS = 5
Message = dict[str, Any]


async def cpu_ms_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    await call()
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(calls):
            await call()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e3


def asgi_post(app: Any, request: Request) -> Callable[[], Awaitable[None]]:
    """One POST through the ASGI app, as uvicorn would deliver it; checks the 200."""
    headers = [(b"host", b"bench"), (b"content-length", str(len(request.body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }

    async def post() -> None:
        delivered = asyncio.Event()
        statuses: list[int] = []

        async def receive() -> Message:
            if not delivered.is_set():
                delivered.set()
                return {"type": "http.request", "body": request.body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the app runs
            return {}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)
        if statuses != [200]:
            raise workload.BenchError(f"{request.path} answered {statuses}")

    return post


async def measure(batches: tuple[int, ...]) -> list[str]:
    spec = workload.read_model_spec(workload.DEFAULT_MODEL)
    env = {"MODEL_PATH": str(spec.path), "MODEL_NAME": workload.MODEL_NAME}
    state = build_state(load_settings({**env, "INTRA_OP_THREADS": "1", "LOG_LEVEL": "warning"}))
    app = create_app(state)
    model = state.registry.get(workload.MODEL_NAME, None).model
    budget = DECODED_BUDGET_FACTOR * state.settings.max_body_bytes  # parsed as the server does
    lines = [
        "| batch | format | body bytes | run ms | parse ms | encode ms | whole app ms "
        "| app overhead ms | run / app |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    async with app.router.lifespan_context(app):
        for batch in batches:
            calls = max(30, 3000 // batch)
            for form in (formats.OIP_JSON, formats.OIP_BINARY):
                lines.append(await _row(app, model, spec, batch, form, calls, budget))
    return lines


async def _row(
    app: Any,
    model: Any,
    spec: workload.ModelSpec,
    batch: int,
    form: RequestFormat,
    calls: int,
    budget: int,
) -> str:
    request = form.build(spec, workload.make_rows(spec, batch))
    headers = {name.lower(): value for name, value in request.headers.items()}
    parsed = parse_inference_request(
        request.body, headers, model.inputs, model.outputs, budget=budget
    )
    names = [output.name for output in parsed.outputs]
    results = dict(zip(names, model.run(parsed.inputs, names), strict=True))

    async def run_model() -> object:
        return model.run(parsed.inputs, names)

    async def parse_request() -> object:
        return parse_inference_request(
            request.body, headers, model.inputs, model.outputs, budget=budget
        )

    async def encode_response() -> object:
        return encode_inference_response(model.name, model.version, parsed, results, model.outputs)

    run = await cpu_ms_per_call(run_model, calls)
    parse = await cpu_ms_per_call(parse_request, calls)
    encode = await cpu_ms_per_call(encode_response, calls)
    whole = await cpu_ms_per_call(asgi_post(app, request), calls)
    overhead = whole - run - parse - encode
    return (
        f"| {batch} | {form.name} | {len(request.body):,} | {run:.3f} | {parse:.3f} "
        f"| {encode:.3f} | {whole:.3f} | {overhead:.3f} | {run / whole:.0%} |"
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(measure((1, 32, 128)))))
