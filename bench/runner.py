"""Run every contender side by side on the same model, core budget and request mix."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench import environment, inprocess, processes, servers, verify, workload, wrk
from bench.formats import Request
from bench.results import IN_PROCESS, IN_PROCESS_MERGED, Cell, RunResults, merged_rows
from bench.servers import ServerSpec
from bench.workload import BenchError, ModelSpec


@dataclass(frozen=True)
class RunOptions:
    model: Path
    batches: tuple[int, ...]
    concurrencies: tuple[int, ...]
    duration_s: int
    warmup_s: int
    rounds: int  # each cell is measured this many times; the median round is reported
    servers: tuple[ServerSpec, ...]
    note: str
    logs: Path  # server logs are kept here (gitignored bench/results/raw/ by default)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(options: RunOptions) -> RunResults:
    wrk.require_wrk()
    spec = workload.read_model_spec(options.model)
    settings = {**asdict(options), "model": _shown(options.model), "logs": _shown(options.logs)}
    settings["servers"] = [server.name for server in options.servers]
    results = RunResults(settings=settings, environment=environment.describe())
    rows = {batch: workload.make_rows(spec, batch) for batch in options.batches}
    expected = {batch: workload.reference_labels(spec, rows[batch]) for batch in rows}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        repository = model_repository(spec, work)
        results.ceiling = _measure_ceiling(options, repository, work)
        available = []
        for server in options.servers:
            reason = server.unavailable()
            if reason is None:
                available.append(server)
            else:
                log(f"skipping {server.name}: {reason}")
                results.skipped[server.name] = reason
        for round_index in range(options.rounds):
            log(f"round {round_index + 1} of {options.rounds}")
            for batch in options.batches:
                log(f"{IN_PROCESS} batch {batch}")
                measured = inprocess.measure_pinned(spec.path, batch, options.duration_s)
                results.all_cells.append(_cell(IN_PROCESS, batch, 1, measured))
            results.all_cells += _merged_references(options, spec)
            # Rotate the order each round so background load does not favour one server.
            shift = round_index % max(len(available), 1)
            for server in available[shift:] + available[:shift]:
                if server.name not in results.failed:
                    _measure_server(
                        server, options, spec, rows, expected, repository, work, results
                    )
    results.cells = median_cells(results.all_cells)
    return results


def _merged_references(options: RunOptions, spec: ModelSpec) -> list[Cell]:
    """In-process ORT at each merged batch size (results.merged_rows), as cells of the
    request batch size and concurrency it bounds, counted in request rows."""
    calls: dict[int, wrk.LoadResult] = {}
    cells = []
    for batch in options.batches:
        for concurrency in options.concurrencies:
            rows = merged_rows(batch, concurrency)
            if rows == batch:
                continue  # nothing to merge: the plain in-process row is the limit
            if rows not in calls:
                log(f"{IN_PROCESS} batch {rows} (merged-batch limit)")
                calls[rows] = inprocess.measure_pinned(spec.path, rows, options.duration_s)
            cells.append(_merged_cell(batch, concurrency, rows, calls[rows]))
    return cells


def _merged_cell(batch: int, concurrency: int, rows: int, measured: wrk.LoadResult) -> Cell:
    """Calls of `rows` rows, as requests of `batch` rows (rows/s is what counts)."""
    per_call = rows // batch
    return Cell(
        contender=IN_PROCESS_MERGED,
        batch=batch,
        concurrency=concurrency,
        requests=measured.requests * per_call,
        requests_per_s=measured.requests_per_s * per_call,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        errors=measured.errors,
        cpu_seconds=measured.cpu_seconds,
    )


def _shown(path: Path) -> str:
    """Paths inside the repository are recorded relative to it (results get committed)."""
    return (
        str(path.relative_to(workload.REPO_ROOT))
        if path.is_relative_to(workload.REPO_ROOT)
        else str(path)
    )


def median_cells(cells: Sequence[Cell]) -> list[Cell]:
    """Per (contender, batch, concurrency): the round with the median req/s (the lower of
    the two middle ones for an even count), carrying the errors of every round."""
    groups: dict[tuple[str, int, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.contender, cell.batch, cell.concurrency), []).append(cell)
    chosen = []
    for group in groups.values():
        ranked = sorted(group, key=lambda c: c.requests_per_s)
        median = ranked[(len(ranked) - 1) // 2]
        chosen.append(replace(median, errors=sum(c.errors for c in group)))
    return chosen


def model_repository(spec: ModelSpec, work: Path) -> Path:
    """Every server loads this very file, laid out as `<name>/<version>/model.onnx`."""
    repository = work / "models"
    version_dir = repository / workload.MODEL_NAME / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(spec.path, version_dir / "model.onnx")
    return repository


def _measure_ceiling(options: RunOptions, repository: Path, work: Path) -> tuple[int, float]:
    concurrency = max(options.concurrencies)
    port = processes.free_port()
    launch = servers.TRIVIAL.launch(repository, work, port)
    ready = f"http://{processes.LOOPBACK}:{port}{servers.TRIVIAL.ready_path}"
    log_path = options.logs / "trivial.log"
    with processes.running_server("trivial", launch.command, launch.env, ready, log_path):
        request = Request(servers.TRIVIAL.ready_path, b"", method="GET")
        measured = wrk.run_wrk(port, request, concurrency, options.duration_s, work / "wrk")
    log(f"load generator ceiling: {measured.requests_per_s:.0f} req/s at c={concurrency}")
    return concurrency, measured.requests_per_s


def _measure_server(
    server: ServerSpec,
    options: RunOptions,
    spec: ModelSpec,
    rows: dict[int, npt.NDArray[np.float32]],
    expected: dict[int, list[int]],
    repository: Path,
    work: Path,
    results: RunResults,
) -> None:
    port = processes.free_port()
    launch = server.launch(repository, work, port)
    ready = f"http://{processes.LOOPBACK}:{port}{server.ready_path}"
    log_path = options.logs / f"{server.name}.log"
    log(f"starting {server.name}")
    try:
        with processes.running_server(
            server.name, launch.command, launch.env, ready, log_path
        ) as session_id:
            for form in server.formats:
                contender = f"{server.shown} {form.name}"
                for batch in options.batches:
                    request = form.build(spec, rows[batch])
                    verify.check_labels(contender, port, request, form, expected[batch])
                    target = _Target(contender, port, session_id)
                    _load_cells(target, request, batch, options, work, results)
    except BenchError as error:
        log(f"FAILED {server.name}: {error}")
        results.failed[server.name] = str(error)


@dataclass(frozen=True)
class _Target:
    contender: str
    port: int
    session_id: int  # the server's processes, for their CPU time


def _load_cells(
    target: _Target,
    request: Request,
    batch: int,
    options: RunOptions,
    work: Path,
    results: RunResults,
) -> None:
    wrk_dir = work / "wrk"
    port = target.port
    if options.warmup_s > 0:
        wrk.run_wrk(port, request, max(options.concurrencies), options.warmup_s, wrk_dir)
    for concurrency in options.concurrencies:
        processes.wait_until_idle(target.session_id)  # what the last wrk run left behind
        cpu_before = processes.session_cpu_seconds(target.session_id)
        measured = wrk.run_wrk(port, request, concurrency, options.duration_s, wrk_dir)
        cpu_seconds = processes.session_cpu_seconds(target.session_id) - cpu_before
        cell = _cell(
            target.contender, batch, concurrency, replace(measured, cpu_seconds=cpu_seconds)
        )
        log(
            f"{target.contender:24} b={batch:<4} c={concurrency:<3} "
            f"{cell.requests_per_s:8.0f} req/s {cell.rows_per_s:8.0f} rows/s "
            f"{cell.rows_per_cpu_s:8.0f} rows/CPU-s "
            f"p50 {cell.p50_ms:7.2f} p99 {cell.p99_ms:7.2f} ms"
            + (f"  ERRORS {cell.errors}" if cell.errors else "")
        )
        results.all_cells.append(cell)


def _cell(contender: str, batch: int, concurrency: int, measured: wrk.LoadResult) -> Cell:
    return Cell(
        contender=contender,
        batch=batch,
        concurrency=concurrency,
        requests=measured.requests,
        requests_per_s=measured.requests_per_s,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        errors=measured.errors,
        cpu_seconds=measured.cpu_seconds,
    )


def select_servers(names: Sequence[str] | None) -> tuple[ServerSpec, ...]:
    by_name = {server.name: server for server in servers.ALL_SERVERS}
    if names is None:
        return servers.ALL_SERVERS
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise BenchError(f"unknown server {unknown[0]!r}; choose from {', '.join(by_name)}")
    return tuple(by_name[name] for name in names)
