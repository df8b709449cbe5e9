"""The limit: ONNX Runtime called in-process in a tight loop, one thread, on the server core.

No HTTP, no (de)serialisation: what is left is the model's own compute, so no server on
the same core can beat these rows/s. Run pinned as a subprocess by the harness:
`python -m bench.inprocess MODEL BATCH DURATION_S` prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import processes, workload
from bench.workload import BenchError
from bench.wrk import LoadResult

WARMUP_CALLS = 20


def measure(model: Path, batch: int, duration_s: float) -> LoadResult:
    spec = workload.read_model_spec(model)
    session = workload.single_thread_session(model)
    feeds = {spec.input_name: workload.make_rows(spec, batch)}
    for _ in range(WARMUP_CALLS):
        session.run(None, feeds)
    latencies_ns: list[int] = []
    cpu_started = time.process_time()
    started = time.perf_counter_ns()
    deadline = started + int(duration_s * 1e9)
    now = started
    while now < deadline:
        before = now
        session.run(None, feeds)
        now = time.perf_counter_ns()
        latencies_ns.append(now - before)
    elapsed_s = (now - started) / 1e9
    cpu_s = time.process_time() - cpu_started
    p50, p99 = np.percentile(np.asarray(latencies_ns), [50, 99]) / 1e6
    return LoadResult(len(latencies_ns), elapsed_s, float(p50), float(p99), 0, cpu_s)


def measure_pinned(model: Path, batch: int, duration_s: int) -> LoadResult:
    """Run `measure` in a child process on the server core, like every server."""
    command = [sys.executable, "-m", "bench.inprocess", str(model), str(batch), str(duration_s)]
    completed = subprocess.run(
        processes.pinned(processes.SERVER_CPU, command),
        capture_output=True,
        text=True,
        cwd=workload.REPO_ROOT,
        timeout=duration_s + 120,
    )
    if completed.returncode != 0:
        raise BenchError(f"in-process ORT run failed: {completed.stderr.strip()[-2000:]}")
    return LoadResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    model_arg, batch_arg, duration_arg = sys.argv[1:4]
    result = measure(Path(model_arg), int(batch_arg), float(duration_arg))
    print(json.dumps(result.__dict__))
