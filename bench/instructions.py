"""CPU instructions per request, counted by callgrind: `python -m bench.instructions`.

Wall-clock and even CPU-time figures move by ±25% on a shared machine; instruction counts
do not. This starts `python -m service` (its defaults, one worker, one ONNX Runtime thread)
under `valgrind --tool=callgrind`, sends warm-up requests, zeroes the counters
(`callgrind_control -z`), sends N requests over C keep-alive connections, dumps the counters
(`callgrind_control -d`) and prints instructions per request: everything the server process
did for them (HTTP, JSON, batching, the model run, metrics). The model run alone is counted
the same way in a second process (`session.run` in a loop, the difference between two loop
lengths), so the line also says how much of a request is not the model.

    python -m bench.instructions --batch 1 --concurrency 1 --requests 200
    python -m bench.instructions --batch 1 --concurrency 8 --requests 400 --format binary

Needs valgrind. Under callgrind everything runs ~50x slower, so counts are per request, not
timings; the server's threads run one at a time, so concurrency still merges requests as
the dynamic batcher would on a busy core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import formats, processes, runner, servers, workload
from bench.formats import Request
from bench.workload import BenchError

READY_TIMEOUT_S = 600.0
_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def raw_request(request: Request, port: int) -> bytes:
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    head.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.body


def _read_response(sock: socket.socket, pending: bytearray) -> int:
    """Read one response off a keep-alive connection; its status."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("server closed the connection")
        pending += chunk
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = len(head) + 4 + length
    while len(pending) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("server closed the connection mid-response")
        pending += chunk
    del pending[:total]
    return status


def send_requests(port: int, payload: bytes, requests: int, concurrency: int) -> None:
    """`requests` requests over `concurrency` connections, each one request at a time."""
    errors: list[str] = []
    share = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]

    def client(count: int) -> None:
        try:
            with socket.create_connection((processes.LOOPBACK, port), timeout=600) as sock:
                pending = bytearray()
                for _ in range(count):
                    sock.sendall(payload)
                    status = _read_response(sock, pending)
                    if status != 200:
                        errors.append(f"status {status}")
                        return
        except (OSError, BenchError) as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=client, args=(count,)) for count in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"requests failed: {errors[0]}")


def _totals(dump: Path) -> int:
    found = _TOTALS.search(dump.read_bytes())
    if found is None:
        raise BenchError(f"no totals in {dump}")
    return int(found.group(1))


def server_instructions(
    model: Path,
    request: Request,
    requests: int,
    concurrencies: tuple[int, ...],
    env: dict[str, str],
    keep: Path | None = None,
    source: Path = workload.REPO_ROOT,
) -> dict[int, int]:
    """Instructions the server process spent on `requests` requests (after a warm-up), at
    each concurrency, one server start for all."""
    spec = workload.read_model_spec(model)
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        work = Path(tmp)
        repository = runner.model_repository(spec, work)
        port = processes.free_port()
        launch = servers.OURS.launch(repository, work, port)
        out = work / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        command += ["--dump-instr=no", *launch.command]
        server_env = {**os.environ, **launch.env, "WORKERS": "1", **env}
        server_env["PYTHONPATH"] = str(source)
        log = (work / "server.log").open("wb")
        proc = subprocess.Popen(
            command, env=server_env, stdout=log, stderr=subprocess.STDOUT, cwd=source
        )
        try:
            _wait_ready(port, proc)
            ready_at = time.monotonic()
            payload = raw_request(request, port)
            counted = {}
            for number, concurrency in enumerate(concurrencies, start=1):
                send_requests(port, payload, max(20, concurrency * 5), concurrency)
                _control("-z", proc.pid)
                send_requests(port, payload, requests, concurrency)
                _control("--dump", proc.pid)
                counted[concurrency] = _dumped_totals(work, proc.pid, number)
                if keep is not None:  # for callgrind_annotate
                    keep.mkdir(parents=True, exist_ok=True)
                    dump = work / f"callgrind.out.{proc.pid}.{number}"
                    shutil.copyfile(dump, keep / f"callgrind.c{concurrency}.out")
            print(
                f"[bench.instructions] {time.monotonic() - ready_at:.0f} s after ready",
                file=sys.stderr,
            )
            return counted
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _dumped_totals(work: Path, pid: int, number: int) -> int:
    """The totals of callgrind's dump `number` (it lands a moment after callgrind_control)."""
    dump = work / f"callgrind.out.{pid}.{number}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if dump.exists() and _TOTALS.search(dump.read_bytes()):
            return _totals(dump)
        time.sleep(0.5)
    listing = ", ".join(path.name for path in work.iterdir())
    raise BenchError(f"callgrind wrote no dump (found: {listing})")


def _control(option: str, pid: int) -> None:
    # vgdb finds the process by names that hold $HOST, which the server's HOST setting
    # changed in the server's environment: name the same one here.
    env = {**os.environ, "HOST": processes.LOOPBACK}
    done = subprocess.run(
        ["callgrind_control", option, str(pid)], capture_output=True, text=True, env=env
    )
    if "OK" not in done.stdout:
        raise BenchError(f"callgrind_control {option} {pid}: {done.stdout}{done.stderr}")


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} under callgrind")
        try:
            with socket.create_connection((processes.LOOPBACK, port), timeout=5) as sock:
                sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
                if _read_response(sock, bytearray()) == 200:
                    return
        except (OSError, BenchError):
            pass
        time.sleep(1)
    raise BenchError("server not ready under callgrind")


_RUN_LOOP = """
import sys
from bench import workload
spec = workload.read_model_spec(workload.Path(sys.argv[1]))
session = workload.single_thread_session(spec.path)
feeds = {spec.input_name: workload.make_rows(spec, int(sys.argv[2]))}
for _ in range(int(sys.argv[3])):
    session.run(None, feeds)
"""


def run_instructions(model: Path, batch: int, runs: int) -> int:
    """Instructions of one `session.run` at this batch size: two loop lengths, subtracted."""
    totals = []
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        for count in (10, 10 + runs):
            out = Path(tmp) / f"run-{count}.out"
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            command += [sys.executable, "-c", _RUN_LOOP, str(model), str(batch), str(count)]
            subprocess.run(command, check=True, capture_output=True, cwd=workload.REPO_ROOT)
            totals.append(_totals(out))
    return (totals[1] - totals[0]) // runs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--concurrency", default="1", help="comma list, e.g. 1,8")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--format", choices=("json", "binary"), default="json")
    parser.add_argument("--model", type=Path, default=workload.DEFAULT_MODEL)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--no-run", action="store_true", help="skip counting session.run alone")
    parser.add_argument("--keep", type=Path, help="copy the dumps here (callgrind_annotate)")
    parser.add_argument(
        "--source",
        type=Path,
        default=workload.REPO_ROOT,
        help="a folder whose service/ package to run (e.g. a copy of an older checkout)",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench.instructions: valgrind is not installed", file=sys.stderr)
        return 2
    env = dict(item.split("=", 1) for item in args.env)
    form = formats.OIP_JSON if args.format == "json" else formats.OIP_BINARY
    spec = workload.read_model_spec(args.model.resolve())
    request = form.build(spec, workload.make_rows(spec, args.batch))
    concurrencies = tuple(int(part) for part in args.concurrency.split(","))
    totals = server_instructions(spec.path, request, args.requests, concurrencies, env, args.keep)
    run = None if args.no_run else run_instructions(spec.path, args.batch, 200)
    for concurrency, total in totals.items():
        per_request = total / args.requests
        line = (
            f"batch {args.batch} {args.format} c={concurrency}: "
            f"{per_request:,.0f} instructions per request ({args.requests} requests)"
        )
        if run is not None:
            line += f"; session.run alone {run:,} ({run / per_request:.0%}), "
            line += f"the rest {per_request - run:,.0f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
