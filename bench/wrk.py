"""Drive a server with wrk (pinned to the load-generator core) and read back its numbers.

wrk replays one prebuilt request (the body is read from a file, so binary bodies work)
over `concurrency` kept-alive connections for a fixed duration; its Lua `done` hook
prints the summary as one JSON line, which is parsed here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import processes
from bench.formats import Request
from bench.workload import BenchError

RESULT_MARKER = "BENCH_RESULT "
# Lua sees the body file and headers; `done` reports latency in microseconds.
BODY_LUA = """
local f = assert(io.open({body_path}, "rb"))
wrk.body = f:read("*all")
f:close()
"""
WRK_SCRIPT = """
wrk.method = "{method}"
{body}
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers, all together
    cpu_seconds: float = 0.0  # CPU the measured side used meanwhile (0: not measured)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    return found


def run_wrk(
    port: int,
    request: Request,
    concurrency: int,
    duration_s: int,
    work_dir: Path,
) -> LoadResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    body_path = work_dir / "body.bin"
    body_path.write_bytes(request.body)
    script_path = work_dir / "request.lua"
    script_path.write_text(_lua_script(body_path, request))
    command = processes.pinned(
        processes.LOADGEN_CPU,
        [
            require_wrk(),
            "-t1",  # one thread: wrk gets exactly one core
            f"-c{concurrency}",
            f"-d{duration_s}s",
            "--timeout",
            "30s",
            "-s",
            str(script_path),
            f"http://{processes.LOOPBACK}:{port}{request.path}",
        ],
    )
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return _parse(completed.stdout)


def _lua_script(body_path: Path, request: Request) -> str:
    headers = "\n".join(
        f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
        for name, value in request.headers.items()
    )
    body = BODY_LUA.format(body_path=_lua_string(str(body_path))) if request.body else ""
    return WRK_SCRIPT.format(
        method=request.method, body=body, headers=headers, marker=RESULT_MARKER
    )


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _parse(stdout: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = json.loads(line[len(RESULT_MARKER) :])
            errors = sum(raw[key] for key in ("connect", "read", "write", "status", "timeout"))
            return LoadResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
                errors=errors,
            )
    raise BenchError(f"wrk printed no result line:\n{stdout[-2000:]}")
