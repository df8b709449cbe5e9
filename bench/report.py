"""Render a run as Markdown: targets, the load generator's ceiling, tables and ratios."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.results import (
    IN_PROCESS,
    IN_PROCESS_MERGED,
    MERGE_CAP_ROWS,
    REFERENCES,
    Cell,
    RunResults,
    cpu,
    wall,
)
from bench.workload import BenchError

MLSERVER_JSON = "mlserver json"
MLSERVER_ANY = (MLSERVER_JSON, "mlserver-batching json")
OURS_LOG = ("ours-log json", "ours-log binary")


Metric = Callable[[Cell], float]


@dataclass(frozen=True)
class Target:
    title: str
    ours: tuple[str, ...]  # the best of these contenders...
    others: tuple[str, ...]  # ...against the best of these, at the same batch size
    batch: int
    goal: float
    concurrency: int | None = None  # ours measured at this many connections only
    other_batch: int | None = None  # the others at this batch size instead (rows/s)
    other_concurrency: int | None = None  # the others at this many connections only
    max_p99_ms: float | None = None  # and ours' p99 at most this


OURS_DEFAULT_JSON = ("ours (defaults) json",)
# "ours json": runs from before batching was on by default, when "ours" had it off.
OURS_UNBATCHED_JSON = ("ours (batching off) json", "ours json")
# Issue 24's goals ("fast by default"): ours with its defaults, JSON, one core each.
TARGETS = (
    # Against the limit, in-process ONNX Runtime on the same core.
    Target(
        "ours JSON vs in-process ORT batch-1 loop, batch 1, c=8 (and p99 ≤ 5 ms)",
        OURS_DEFAULT_JSON,
        (IN_PROCESS,),
        1,
        1.5,
        concurrency=8,
        max_p99_ms=5.0,
    ),
    Target(
        "ours JSON, batch 1, c=32 vs in-process ORT rows/s at batch 32",
        OURS_DEFAULT_JSON,
        (IN_PROCESS,),
        1,
        0.5,
        concurrency=32,
        other_batch=32,
    ),
    Target(
        "ours JSON vs in-process ORT, batch 32, c=8",
        OURS_DEFAULT_JSON,
        (IN_PROCESS,),
        32,
        0.9,
        concurrency=8,
    ),
    Target(
        "ours binary vs in-process ORT, batch 32",
        ("ours (defaults) binary",),
        (IN_PROCESS,),
        32,
        0.92,
    ),
    # Against MLServer's better configuration (adaptive batching off or on), JSON both sides.
    Target("ours JSON vs MLServer's best, batch 1", OURS_DEFAULT_JSON, MLSERVER_ANY, 1, 3.0),
    Target("ours JSON vs MLServer's best, batch 32", OURS_DEFAULT_JSON, MLSERVER_ANY, 32, 1.3),
    # The inference log may cost at most 5% of req/s: ours-log against ours, same settings.
    Target(
        "ours with the inference log vs ours, batch 1 (req/s)",
        OURS_LOG,
        ("ours (defaults) json", "ours (defaults) binary"),
        1,
        0.95,
    ),
)


DOCS_BEGIN = "<!-- bench:results -->"
DOCS_END = "<!-- /bench:results -->"


def update_docs(docs: Path, results: RunResults, command: str, chart: Path) -> None:
    """Replace the text between the docs' result markers with this run's report."""
    text = docs.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise BenchError(f"{docs} lacks the markers {DOCS_BEGIN} ... {DOCS_END}")
    link = os.path.relpath(chart, docs.parent)
    # Image sizes in the docs come from one measurement, bench/results/images.json
    # (scripts/docs_tables.py), not from whichever benchmark run was last.
    body = render(results, command, heading_level=3, images=False)
    block = f"{DOCS_BEGIN}\n![throughput, p99 and work per CPU-second]({link})\n\n{body}"
    start = text.index(DOCS_BEGIN)
    end = text.index(DOCS_END)
    docs.write_text(text[:start] + block + text[end:])


def render(results: RunResults, command: str, heading_level: int = 1, images: bool = True) -> str:
    h1 = "#" * heading_level
    h2 = "#" * (heading_level + 1)
    lines = [f"{h1} Serving benchmark", ""]
    lines += _preamble(results, command)
    lines += ["", f"{h2} Targets", "", *target_table(results)]
    lines += ["", f"{h2} Load generator ceiling", "", *_ceiling(results)]
    for batch in results.settings["batches"]:
        lines += ["", f"{h2} Batch {batch}", "", *_batch_table(results, batch)]
        lines += ["", f"Best rows/s ratios at batch {batch} (row ÷ column):", ""]
        lines += _ratio_matrix(results, batch)
    lines += _problems(results, h2)
    if results.image_report and images:
        # The image report's own headings start at "###": keep them under ours.
        shift = "#" * (heading_level - 1)
        table = [
            shift + line if line.startswith("#") else line
            for line in results.image_report.strip().splitlines()
        ]
        lines += ["", f"{h2} Images", "", *table]
    return "\n".join(lines) + "\n"


def _preamble(results: RunResults, command: str) -> list[str]:
    env = results.environment
    settings = results.settings
    peers = f"MLServer {env.get('mlserver')}, LitServe {env.get('litserve')}"
    lines = [
        f"Measured {env['date_utc']} with `{command}`.",
        "",
        f"- Machine: {env['cpu']}, {env['cpus_online']} CPUs online, "
        f"1-minute load average at start {env['load_average_1m']}.",
        f"- Versions: Python {env['python']}, onnxruntime {env['onnxruntime']}, "
        f"FastAPI {env['fastapi']}, {peers}, {env['wrk']}.",
        "- Budget: every server is pinned to CPU 0 (`taskset -c 0`) with one ONNX Runtime "
        "thread; the load generator (wrk, one thread) is pinned to CPU 1; in-process ORT runs "
        "on CPU 0 with one thread.",
        f"- Each cell: {settings['duration_s']} s of load after a {settings['warmup_s']} s "
        f"warm-up per batch size; concurrency = open connections "
        f"({', '.join(map(str, settings['concurrencies']))}); {settings['rounds']} round(s), "
        "servers in a rotated order each round, the median round reported.",
        "- Before timing, every contender answered the benchmark request with the same labels "
        "as in-process ORT (a mismatch fails the contender).",
    ]
    if settings.get("note"):
        lines.append(f"- Note: {settings['note']}")
    return lines


def target_table(results: RunResults) -> list[str]:
    """Each target judged twice: on wall-clock rates and on work per CPU-second, with the
    p99 of every figure beside it.

    The last column is the most any server could reach on one core: in-process ORT's rows
    per CPU-second divided by the other contender's. A goal above it is out of reach.
    """
    lines = [
        "| target | goal | wall clock: best vs best | met | per CPU-second: best vs best | met "
        "| one-core bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        goal = f"≥ {target.goal:g}x"
        if target.max_p99_ms is not None:
            goal += f", p99 ≤ {target.max_p99_ms:g} ms"
        row = f"| {target.title} | {goal} |"
        other_batch = target.other_batch or target.batch
        for metric, unit in ((wall, "/s"), (cpu, "/CPU-s")):
            ours = _best_of(results, target.ours, target.batch, metric, target.concurrency)
            other = _best_of(results, target.others, other_batch, metric, target.other_concurrency)
            if ours is None or other is None:
                row += " not measured | — |"
                continue
            ratio = _ratio(ours, other, metric)
            versus = f"{_describe(ours, metric, unit)} vs {_describe(other, metric, unit)}"
            met = ratio >= target.goal
            if target.max_p99_ms is not None and ours.p99_ms > target.max_p99_ms:
                met = False
            row += f" {ratio:.2f}x ({versus}) | {'yes' if met else '**no**'} |"
        limit = results.best(IN_PROCESS, other_batch, cpu)
        other = _best_of(results, target.others, other_batch, cpu, target.other_concurrency)
        row += f" {_ratio(limit, other, cpu):.2f}x |" if limit and other else " — |"
        lines.append(row)
    return lines


def _best_of(
    results: RunResults,
    contenders: Sequence[str],
    batch: int,
    metric: Metric,
    concurrency: int | None = None,
) -> Cell | None:
    if concurrency is not None:
        cells = [_cell_at(results, name, batch, concurrency) for name in contenders]
    else:
        cells = [results.best(name, batch, metric) for name in contenders]
    return max((c for c in cells if c is not None), key=metric, default=None)


def _ratio(a: Cell, b: Cell, metric: Metric = wall) -> float:
    return metric(a) / metric(b) if metric(b) else float("inf")


def _describe(cell: Cell, metric: Metric, unit: str) -> str:
    what = "rows" if cell.batch > 1 else "req"
    where = f" c={cell.concurrency}" if cell.contender != IN_PROCESS else f" batch {cell.batch}"
    return f"{cell.contender}{where}: {metric(cell):,.0f} {what}{unit}, p99 {cell.p99_ms:.2f} ms"


def _ceiling(results: RunResults) -> list[str]:
    if results.ceiling is None:
        return ["Not measured."]
    concurrency, ceiling = results.ceiling
    served = [c for c in results.cells if c.contender not in REFERENCES and c.valid]
    top = max(served, key=lambda c: c.requests_per_s, default=None)
    line = (
        f"wrk against a do-nothing HTTP responder (`bench/trivial_server.py`, CPU 0) at "
        f"c={concurrency}: **{ceiling:,.0f} req/s**."
    )
    if top is not None:
        share = top.requests_per_s / ceiling if ceiling else float("inf")
        line += (
            f" The fastest served cell ({top.contender}, batch {top.batch}, c={top.concurrency}) "
            f"reached {top.requests_per_s:,.0f} req/s = {share:.0%} of that ceiling, so the "
            "load generator is not what limits the servers."
            if share < 0.5
            else f" The fastest served cell reached {share:.0%} of it: treat it as wrk-bound."
        )
    return [line]


def _batch_table(results: RunResults, batch: int) -> list[str]:
    header = (
        "| contender | c | req/s | rows/s | rows/CPU-s | p50 ms | p99 ms "
        "| x MLServer JSON | x in-process |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    if any(c.contender == IN_PROCESS_MERGED and c.batch == batch for c in results.cells):
        lines = [
            f"*{IN_PROCESS_MERGED}*: in-process ORT running the rows a batching server can "
            f"merge at that concurrency (batch x c, at most {MERGE_CAP_ROWS} rows, whole "
            "requests), per request row: the merged-batch limit.",
            "",
            *lines,
        ]
    limit = results.best(IN_PROCESS, batch)
    for cell in (c for c in results.cells if c.batch == batch):
        peer = _cell_at(results, MLSERVER_JSON, batch, cell.concurrency)
        vs_peer = _fmt_ratio(cell, peer)
        vs_limit = _fmt_ratio(cell, limit)
        errors = "" if cell.valid else f" ⚠ {cell.errors} errors"
        lines.append(
            f"| {cell.contender}{errors} | {cell.concurrency} | {cell.requests_per_s:,.0f} "
            f"| {cell.rows_per_s:,.0f} | {cell.rows_per_cpu_s:,.0f} "
            f"| {cell.p50_ms:.2f} | {cell.p99_ms:.2f} "
            f"| {vs_peer} | {vs_limit} |"
        )
    return lines


def _cell_at(results: RunResults, contender: str, batch: int, concurrency: int) -> Cell | None:
    for cell in results.cells:
        if (cell.contender, cell.batch, cell.concurrency) == (contender, batch, concurrency):
            return cell if cell.valid else None
    return None


def _fmt_ratio(cell: Cell, other: Cell | None) -> str:
    if other is None or not cell.valid or other is cell:
        return "—"
    return f"{_ratio(cell, other):.2f}x"


def _ratio_matrix(results: RunResults, batch: int) -> list[str]:
    names = [name for name in results.contenders() if name != IN_PROCESS_MERGED]
    best = {name: results.best(name, batch) for name in names}
    cells = {name: cell for name, cell in best.items() if cell is not None}
    names = list(cells)
    lines = ["| ÷ | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
    for row in names:
        ratios = [f"{_ratio(cells[row], cells[col]):.2f}x" for col in names]
        lines.append(f"| **{row}** | " + " | ".join(ratios) + " |")
    return lines


def _problems(results: RunResults, h2: str) -> list[str]:
    lines: list[str] = []
    if results.failed:
        lines += ["", f"{h2} Failed", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in results.failed.items()]
    if results.skipped:
        lines += ["", f"{h2} Not measured", ""]
        lines += [f"- {name}: {reason}" for name, reason in results.skipped.items()]
    return lines
