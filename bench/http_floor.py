"""The HTTP layer's own CPU per request: `python -m bench.http_floor`.

The server runs uvicorn (uvloop, httptools) with service/http.py's protocol class. Here that
same stack serves an ASGI application that only reads the body and answers a fixed reply of a
batch-1 answer's size, while wrk replays the batch-1 JSON request over C keep-alive
connections (server on CPU 0, wrk on CPU 1, as in `python -m bench`). Beside it,
bench/trivial_server.py (an asyncio protocol answering without parsing anything) gives the
socket and event-loop floor. The server's CPU time per request is what the HTTP layer costs;
what the real server spends above it is its application: parse, batching, model, encode.

    taskset -c 0,1 .venv/bin/python -m bench.http_floor --concurrency 32 --duration 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench import formats, processes, workload, wrk
from bench.formats import Request

REPLY = (
    b'{"model_name":"mlp","model_version":"1","outputs":'
    b'[{"name":"label","datatype":"INT64","shape":[1],"data":[3]}]}'
)


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the request body, answers REPLY: no parsing, no model."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(REPLY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": REPLY})


def serve(port: int) -> None:
    """uvicorn as the server configures it (service/server.py), around floor_app."""
    import uvicorn

    from service.http import protocol_class
    from service.settings import Settings

    uvicorn.run(
        floor_app,
        host=processes.LOOPBACK,
        port=port,
        loop="uvloop",
        http=protocol_class(Settings()),
        interface="asgi3",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


def measure(name: str, command: list[str], request: Request, args: argparse.Namespace) -> str:
    port = processes.free_port()
    ready = f"http://{processes.LOOPBACK}:{port}/v2/health/live"
    with (
        TemporaryDirectory() as work,
        processes.running_server(
            name, [*command, str(port)], {}, ready, Path(work) / "server.log"
        ) as session,
    ):
        wrk.run_wrk(port, request, args.concurrency, 1, Path(work))  # warm-up
        processes.wait_until_idle(session)
        before = processes.session_cpu_seconds(session)
        measured = wrk.run_wrk(port, request, args.concurrency, args.duration, Path(work))
        cpu = processes.session_cpu_seconds(session) - before
    if measured.errors or not measured.requests:
        raise workload.BenchError(
            f"{name}: {measured.errors} errors in {measured.requests} requests"
        )
    per_request = cpu / measured.requests * 1e6
    return (
        f"| {name} | {request.method} {len(request.body):,} bytes | {args.concurrency} "
        f"| {measured.requests_per_s:,.0f} | {per_request:.1f} |"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    spec = workload.read_model_spec(workload.DEFAULT_MODEL)
    infer = formats.OIP_JSON.build(spec, workload.make_rows(spec, 1))
    trivial = [sys.executable, "-m", "bench.trivial_server"]
    floor = [sys.executable, "-m", "bench.http_floor", "--serve"]
    print("| server | request | c | req/s | server CPU µs per request |")
    print("|---|---|--:|--:|--:|")
    try:
        print(measure("raw asyncio responder", trivial, infer, args))
        print(measure("uvicorn + service/http.py", floor, infer, args))
    except workload.BenchError as error:
        print(f"bench.http_floor: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
