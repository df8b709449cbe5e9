"""``WORKERS`` > 1: several server processes on one port, supervised by this one.

One Python process tops out at one core of HTTP, JSON and Python work however many cores ONNX
Runtime may use. The supervisor binds the port once, creates the shared metrics memory
(service/metrics.py), and starts ``WORKERS`` copies of the server (``python -m
service.workers INDEX ...``), each loading its own sessions with its share of the usable
CPUs (service/server.py: intra_op_threads). The kernel spreads new connections over the
processes accepting on the shared socket.

- SIGTERM or SIGINT: forwarded to every worker as SIGTERM; each drains its in-flight
  requests (SHUTDOWN_TIMEOUT_S) and flushes its inference log, in parallel; the supervisor
  exits 0 once all have exited 0.
- A worker that exits with an error before it serves (a bad model: exit 1) stops them all,
  with its code: another try would fail the same way.
- A worker that dies otherwise (killed by a signal, e.g. SIGKILL or the OOM killer, before
  or while serving; or exits while serving) is started again in its place, keeping its
  metrics block (counters go on adding up, its gauges restart from 0); more than
  RESTART_LIMIT deaths within RESTART_WINDOW_S stop them all with exit 1, for the
  orchestrator to act on.
- Workers get SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG): no orphans.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from service.logging_setup import settings_with_logging
from service.metrics import ServerMetrics, shared_memory
from service.repository import ModelSourceError, discover_models
from service.settings import Settings

log = logging.getLogger("service.workers")
BACKLOG = 2048  # uvicorn's default
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_fd: int  # read end of the pipe the worker writes one byte to once it serves
    ready: bool = False
    silent: bool = False  # its pipe closed without the byte: it is on its way out
    deaths: list[float] = field(default_factory=list)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.set_inheritable(True)
    return sock


def supervise(settings: Settings) -> int:
    """Start and watch ``settings.workers`` server processes until SIGTERM/SIGINT."""
    try:
        names = list(dict.fromkeys(source.name for source in discover_models(settings)))
    except ModelSourceError as exc:
        log.error("%s", exc)
        return 1
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    metrics_fd = shared_memory(names, settings.workers)
    supervisor = _Supervisor(settings, names, sock, metrics_fd)
    try:
        return supervisor.run()
    finally:
        sock.close()
        os.close(metrics_fd)


class _Supervisor:
    def __init__(
        self, settings: Settings, names: list[str], sock: socket.socket, metrics_fd: int
    ) -> None:
        self._settings = settings
        self._names = names
        self._sock = sock
        self._metrics_fd = metrics_fd
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._exit_code = 0

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        log.info(
            "starting %d worker processes on %s:%d",
            self._settings.workers,
            self._settings.host,
            self._settings.port,
        )
        for index in range(self._settings.workers):
            self._start(index)
        while self._workers:
            self._watch()
        return self._exit_code

    def _start(self, index: int, deaths: list[float] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        command = [
            sys.executable,
            "-m",
            "service.workers",
            str(index),
            str(self._settings.workers),
            str(self._sock.fileno()),
            str(self._metrics_fd),
            str(write_fd),
            json.dumps(self._names),
        ]
        # WORKERS as counted (WORKERS=auto: service/auto_workers.py), for each worker's share
        # of the CPUs.
        env = {**os.environ, "WORKERS": str(self._settings.workers)}
        process = subprocess.Popen(
            command, pass_fds=(self._sock.fileno(), self._metrics_fd, write_fd), env=env
        )
        os.close(write_fd)
        self._workers[index] = _Worker(index, process, read_fd, deaths=deaths or [])

    def _watch(self) -> None:
        waiting = {w.ready_fd: w for w in self._workers.values() if not (w.ready or w.silent)}
        if waiting:
            readable, _, _ = select.select(list(waiting), [], [], POLL_S)
            for fd in readable:
                worker = waiting[fd]
                worker.ready = os.read(fd, 1) == b"1"
                worker.silent = not worker.ready
                if worker.ready and all(w.ready for w in self._workers.values()):
                    log.info("all %d workers are serving", len(self._workers))
        else:
            time.sleep(POLL_S)
        for worker in list(self._workers.values()):
            code = worker.process.poll()
            if code is not None:
                self._ended(worker, code)

    def _ended(self, worker: _Worker, code: int) -> None:
        del self._workers[worker.index]
        os.close(worker.ready_fd)
        if self._stopping:
            if code not in (0, -signal.SIGTERM):  # SIGTERM before it served: stopped at once
                log.error("worker %d exited with %d while stopping", worker.index, code)
                self._exit_code = self._exit_code or 1
            return
        if not worker.ready and code > 0:
            log.error("worker %d exited with %d before serving; stopping", worker.index, code)
            self._exit_code = code
            self._stop_all()
            return
        now = time.monotonic()
        deaths = [t for t in worker.deaths if now - t < RESTART_WINDOW_S] + [now]
        if len(deaths) > RESTART_LIMIT:
            log.error(
                "worker %d died %d times within %.0f s; stopping",
                worker.index,
                len(deaths),
                RESTART_WINDOW_S,
            )
            self._exit_code = 1
            self._stop_all()
            return
        log.error(
            "worker %d (pid %d) died with %d %s; starting it again",
            worker.index,
            worker.process.pid,
            code,
            "while serving" if worker.ready else "before serving",
        )
        self._start(worker.index, deaths)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("%s: stopping all workers", signal.Signals(signum).name)
        self._stop_all()

    def _stop_all(self) -> None:
        self._stopping = True
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)


def _die_with_parent() -> None:
    """SIGTERM this process when the supervisor dies (Linux)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM is all there is
        pass


def worker_main(argv: list[str]) -> int:
    """One worker: ``INDEX COUNT LISTEN_FD METRICS_FD READY_FD MODEL_NAMES_JSON``."""
    index, count, listen_fd, metrics_fd, ready_fd = (int(value) for value in argv[:5])
    names: list[str] = json.loads(argv[5])
    _die_with_parent()
    settings = settings_with_logging()
    if settings is None:
        return 2
    from service.server import serve_process  # onnxruntime, FastAPI: only in workers

    metrics = ServerMetrics(names, metrics_fd, count, index)
    metrics.restart()
    sock = socket.socket(fileno=listen_fd)
    log.info("worker %d of %d: pid %d", index, count, os.getpid())

    def started() -> None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    return serve_process(settings, metrics, sock, started)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
