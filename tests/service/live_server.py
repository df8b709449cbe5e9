"""Start a real `python -m service` on 127.0.0.1 and talk to it over plain sockets and HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.models_for_tests import mlp_repository

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 90.0
POLL_INTERVAL_S = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, labels: str = "") -> float:
        """One sample from /metrics, e.g. metric("inference_requests_in_flight")."""
        text = httpx.get(f"{self.base}/metrics").text
        selector = r"\{" + re.escape(labels) + r"\}" if labels else ""
        pattern = re.escape(name) + selector + r" (\S+)"
        match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def wait_for_metric(
        self, name: str, value: float, labels: str = "", attempts: int = 400
    ) -> None:
        """Poll /metrics (bounded) until the sample reaches ``value``."""
        for _ in range(attempts):
            if self.metric(name, labels) >= value:
                return
            time.sleep(POLL_INTERVAL_S)
        raise AssertionError(f"{name} never reached {value}; server log:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, then the exit code (bounded wait; kill only if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError("server ignored SIGTERM for 60 s") from None


def server_env(extra: Mapping[str, str], bundled: bool = False) -> dict[str, str]:
    """The server's environment. Without MODEL_REPOSITORY or MODEL_PATH in `extra` it serves
    the tests' own MLP repository (tests/models_for_tests.py), never what models/ holds;
    `bundled=True` sets neither, so the server falls back to the repository's models/."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODEL_", "ORT_", "XDG_"))
    }
    env.update({"HOST": "127.0.0.1", "LOG_LEVEL": "info", "INTRA_OP_THREADS": "1"})
    if not bundled and not {"MODEL_REPOSITORY", "MODEL_PATH"} & extra.keys():
        env["MODEL_REPOSITORY"] = str(mlp_repository())
    env.update(extra)
    return env


def spawn(
    extra_env: Mapping[str, str], log_path: Path, bundled: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = server_env({"PORT": str(port), **extra_env}, bundled)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return process, port


def wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"server not ready in {STARTUP_TIMEOUT_S} s:\n{server.log()}")


@contextmanager
def running_server(
    extra_env: Mapping[str, str], log_path: Path, bundled: bool = False
) -> Iterator[LiveServer]:
    """A ready server for the duration of the block, stopped with SIGTERM afterwards (what it
    serves: server_env)."""
    process, port = spawn(extra_env, log_path, bundled)
    server = LiveServer(process, port, log_path)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


class HeldRequest:
    """An inference request whose body is sent only when asked: deterministic in-flight work.

    The headers and half the body go out at once, so the server has admitted the request and
    waits for the rest; ``finish()`` sends the remainder and returns (status, headers, body).
    """

    def __init__(self, server: LiveServer, path: str, body: bytes) -> None:
        self._body = body
        self._socket = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self._socket.sendall(head + body[: len(body) // 2])

    def abort(self) -> None:
        """Hang up with the body half sent."""
        self._socket.close()

    def finish(self) -> tuple[int, str, bytes]:
        self._socket.sendall(self._body[len(self._body) // 2 :])
        return self.response()

    def response(self) -> tuple[int, str, bytes]:
        """Read the answer (as far as it goes; the server may answer before the body is in)."""
        chunks = []
        while chunk := self._socket.recv(65536):
            chunks.append(chunk)
        self._socket.close()
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, head.decode("latin-1"), payload
