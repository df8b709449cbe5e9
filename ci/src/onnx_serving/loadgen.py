"""A small, bounded load generator for `dagger call benchmark` (stdlib only).

It sends a fixed number of Open Inference Protocol v2 JSON requests, built from the model's
metadata (examples.py), from `--concurrency` keep-alive connections and prints requests/s,
rows/s and latency percentiles. It is a quick health-under-load report for the pipeline, not
the benchmark: bench/ measures contenders side by side with wrk. Any failed request makes it
exit non-zero.

    python -m onnx_serving.loadgen --url 127.0.0.1:8000 --model mlp --requests 500
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from onnx_serving.examples import example_inputs


@dataclass
class Tally:
    """What the workers measured (latencies in seconds)."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _request_body(metadata: dict[str, Any], batch: int) -> bytes:
    """A v2 JSON request with every input of the model, `batch` rows each."""
    inputs = [example.as_json() for example in example_inputs(metadata, batch)]
    return json.dumps({"inputs": inputs}).encode()


def _connection(url: str) -> http.client.HTTPConnection:
    host, _, port = url.partition(":")
    return http.client.HTTPConnection(host, int(port or 80), timeout=30)


def _get_json(url: str, method: str, path: str, what: str) -> Any:
    conn = _connection(url)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"{what}: HTTP {response.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def _fetch_metadata(url: str, model: str) -> dict[str, Any]:
    metadata: dict[str, Any] = _get_json(url, "GET", f"/v2/models/{model}", f"model {model!r}")
    return metadata


def first_model(url: str) -> str:
    """The first model of the server's repository index (POST /v2/repository/index)."""
    index = _get_json(url, "POST", "/v2/repository/index", "repository index")
    if not index:
        raise SystemExit("the repository index lists no model")
    return str(sorted(entry["name"] for entry in index)[0])


def _worker(url: str, path: str, body: bytes, count: int, tally: Tally) -> None:
    conn = _connection(url)
    headers = {"Content-Type": "application/json"}
    try:
        for _ in range(count):
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except OSError as exc:  # a dropped connection is a failed request, then reconnect
                conn.close()
                conn = _connection(url)
                with tally.lock:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - start
            with tally.lock:
                if response.status == 200:
                    tally.latencies.append(elapsed)
                else:
                    tally.errors.append(f"HTTP {response.status}: {payload[:200]!r}")
    finally:
        conn.close()


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def run(url: str, model: str, requests: int, concurrency: int, batch: int) -> Tally:
    """Send `requests` requests (split over `concurrency` threads) and return the tally."""
    body = _request_body(_fetch_metadata(url, model), batch)
    path = f"/v2/models/{model}/infer"
    tally = Tally()
    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    threads = [
        threading.Thread(target=_worker, args=(url, path, body, n, tally)) for n in shares if n
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def report(tally: Tally, seconds: float, batch: int, concurrency: int) -> str:
    """A few lines: throughput and latency percentiles."""
    done = sorted(tally.latencies)
    lines = [f"requests ok={len(done)} failed={len(tally.errors)} concurrency={concurrency}"]
    if done:
        rate = len(done) / seconds
        lines.append(f"throughput {rate:.1f} req/s, {rate * batch:.1f} rows/s (batch {batch})")
        p50, p99 = (_percentile(done, q) * 1000 for q in (0.50, 0.99))
        lines.append(f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    lines.extend(f"error: {e}" for e in tally.errors[:5])
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server host:port")
    parser.add_argument("--model", default="", help="model name (default: the first served)")
    parser.add_argument("--requests", type=_positive, default=2000)
    parser.add_argument("--concurrency", type=_positive, default=8)
    parser.add_argument("--batch", type=_positive, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = args.model or first_model(args.url)
    tally = run(args.url, model, args.requests, args.concurrency, args.batch)
    print(report(tally, time.perf_counter() - start, args.batch, args.concurrency))
    return 1 if tally.errors or not tally.latencies else 0


if __name__ == "__main__":
    sys.exit(main())
