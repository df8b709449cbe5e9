"""The inference log's CPU cost per request, piece by piece: `python -m bench.log_cost`.

Request path: what the infer handler does for the log (start a row, hash the inputs, note the
answer's size, queue the row), in this one process, per batch size. Writer: the background
task's CPU per row to COPY a queue of rows into a throwaway PostgreSQL (bench/log_database.py;
the database's own CPU is another process and not counted). CPU time (`time.process_time`),
best of 5 repeats, like bench.layers: run it pinned, `taskset -c 0 .venv/bin/python -m
bench.log_cost`. The side-by-side cost in req/s is the `ours-log` contender of `python -m bench`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench import formats, log_database, workload
from service.inference_log import InferenceLog
from service.metrics import ServerMetrics
from service.protocol import encode_inference_response, parse_inference_request
from service.repository import ModelSource
from service.runtime import LoadedModel, load_model
from service.settings import load_settings

REPEATS = 5
WRITER_ROWS = 20_000


def _model(spec: workload.ModelSpec) -> LoadedModel:
    source = ModelSource(workload.MODEL_NAME, "1", Path(spec.path))
    return load_model(source, ["CPUExecutionProvider"], 1)


def _log(url: str, queue_size: int) -> InferenceLog:
    settings = load_settings(
        {"PREDICTION_LOG_URL": url, "PREDICTION_LOG_QUEUE_SIZE": str(queue_size)}
    )
    return InferenceLog.from_settings(settings, ServerMetrics())


async def request_path_us(model: LoadedModel, spec: workload.ModelSpec, batch: int) -> float:
    """CPU per request of the handler's log hooks (the row is queued, never written)."""
    request = formats.OIP_BINARY.build(spec, workload.make_rows(spec, batch))
    headers = {name.lower(): value for name, value in request.headers.items()}
    parsed = parse_inference_request(request.body, headers, model.inputs, model.outputs)
    names = [output.name for output in parsed.outputs]
    results = dict(zip(names, model.run(parsed.inputs, names), strict=True))
    encoded = encode_inference_response(model.name, model.version, parsed, results, model.outputs)
    calls = max(200, 20_000 // batch)
    best = float("inf")
    for _ in range(REPEATS):
        log = _log("postgresql://bench@127.0.0.1:1/unused", calls)  # never started
        started = time.process_time()
        for _ in range(calls):
            entry = log.entry(model.name, time.time())
            entry.input_bytes = len(request.body)
            await entry.add_inputs(parsed.id, parsed.inputs, model.inputs)
            entry.add_outputs(results, parsed.outputs, model.outputs, len(encoded.body))
            log.submit(entry.finish(model.version, 200, None, 0.001))
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


async def writer_us_per_row(model: LoadedModel, spec: workload.ModelSpec, url: str) -> float:
    """CPU per row of the writer: connect, COPY WRITER_ROWS queued rows, close."""
    request = formats.OIP_BINARY.build(spec, workload.make_rows(spec, 1))
    headers = {name.lower(): value for name, value in request.headers.items()}
    parsed = parse_inference_request(request.body, headers, model.inputs, model.outputs)
    best = float("inf")
    for _ in range(REPEATS):
        log = _log(url, WRITER_ROWS)
        for _ in range(WRITER_ROWS):
            entry = log.entry(model.name, time.time())
            await entry.add_inputs(parsed.id, parsed.inputs, model.inputs)
            log.submit(entry.finish(model.version, 200, None, 0.001))
        started = time.process_time()
        log.start()
        await log.close()  # flushes everything queued
        best = min(best, (time.process_time() - started) / WRITER_ROWS)
    return best * 1e6


async def measure(url: str) -> list[str]:
    spec = workload.read_model_spec(workload.DEFAULT_MODEL)
    model = _model(spec)
    lines = ["| what | CPU µs |", "|---|--:|"]
    for batch in (1, 32, 128):
        cost = await request_path_us(model, spec, batch)
        lines.append(f"| request path, batch {batch} (binary) | {cost:.1f} per request |")
    writer = await writer_us_per_row(model, spec, url)
    lines.append(f"| writer (COPY, {WRITER_ROWS:,} rows) | {writer:.1f} per row |")
    return lines


if __name__ == "__main__":
    database = log_database.database_url()  # before the event loop: it runs one of its own
    print("\n".join(asyncio.run(measure(database))))
