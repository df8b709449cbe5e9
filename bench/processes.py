"""Start a server pinned to one core, wait until it is ready, and always stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from bench.workload import BenchError

LOOPBACK = "127.0.0.1"
# The CPU budget: every server gets core 0, the load generator core 1.
SERVER_CPU = "0"
LOADGEN_CPU = "1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


# A server counts as idle once it used less than IDLE_CPU_S of CPU in IDLE_PROBE_S (10%).
IDLE_PROBE_S = 0.2
IDLE_CPU_S = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _session_stats(session_id: int) -> dict[int, list[str]]:
    """/proc/PID/stat fields (from field 3 on) of every live process in a session."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces: split after its closing ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[3]) == session_id:  # field 6 (session id); fields[0] is field 3
            found[int(stat.parent.name)] = fields
    return found


def session_cpu_seconds(session_id: int) -> float:
    """CPU time (user + system) used so far by every live process of a session.

    Servers are started in their own session, so this covers the workers peers fork. Under
    background load, wall-clock rates drop but work per CPU-second stays put: the report
    shows both.
    """
    stats = _session_stats(session_id).values()
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in stats)  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_idle(session_id: int, timeout_s: float = 30.0) -> None:
    """Wait until the server's processes stop using CPU (or `timeout_s` passes).

    When wrk stops it closes its connections, but a server still works off the requests it
    had accepted (at batch 128 and 32 connections, about half a second of work): without
    this wait they would delay the next cell's first requests and be charged to its CPU
    time. That is what gave every server a p99 near 500 ms at batch 128, 1 connection,
    right after the 32-connection warm-up.
    """
    deadline = time.monotonic() + timeout_s
    before = session_cpu_seconds(session_id)
    while time.monotonic() < deadline:
        time.sleep(IDLE_PROBE_S)
        now = session_cpu_seconds(session_id)
        if now - before < IDLE_CPU_S:
            return
        before = now


def pin_session(session_id: int, cpu: str) -> None:
    """Pin every thread of every process in the session to `cpu`.

    `taskset` at launch is not enough: ONNX Runtime's default intra-op pool (the naive app's
    default session) pins its own threads to the other cores, escaping the budget.
    """
    for pid in _session_stats(session_id):
        subprocess.run(["taskset", "-a", "-c", "-p", cpu, str(pid)], capture_output=True)


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command]


def http_get_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return None


@contextmanager
def running_server(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    log_path: Path,
) -> Iterator[int]:
    """Run `command` on the server core until the block ends; its output goes to `log_path`.

    Yields the server's session id (for `session_cpu_seconds`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(SERVER_CPU, command),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so the whole process group can be stopped
        )
        try:
            _wait_ready(name, process, ready_url, log_path)
            pin_session(process.pid, SERVER_CPU)
            yield process.pid  # start_new_session: the session id is the leader's pid
        finally:
            _stop(process)


def _wait_ready(name: str, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{name} exited with {process.returncode} before ready:\n{tail}")
        if http_get_status(url) == 200:
            return
        time.sleep(0.2)
    raise BenchError(f"{name} not ready at {url} after {READY_TIMEOUT_S:.0f} s (log: {log})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (peers fork workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    pgid = os.getpgid(process.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
    # Workers a peer forked may outlive their parent by a moment: end the group.
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
