"""The report's arithmetic on made-up cells: targets (p99 beside every figure, a p99 bound,
another batch size on the other side), and the merged-batch reference rows. No servers run."""

from __future__ import annotations

from bench import report
from bench.results import IN_PROCESS, IN_PROCESS_MERGED, Cell, RunResults, merged_rows
from bench.runner import _merged_cell
from bench.wrk import LoadResult

ENVIRONMENT = {
    "date_utc": "2026-12-07 15:00 UTC",
    "cpu": "test CPU",
    "cpus_online": "2",
    "load_average_1m": "0.1",
    "python": "3",
    "onnxruntime": "1",
    "fastapi": "0",
    "mlserver": "1.7.1",
    "litserve": "0",
    "wrk": "wrk",
}
SETTINGS = {"batches": [1, 32], "concurrencies": [8, 32], "duration_s": 1, "warmup_s": 0}
SETTINGS |= {"rounds": 1}


def cell(name: str, batch: int, concurrency: int, req_s: float, p99: float = 1.0) -> Cell:
    return Cell(name, batch, concurrency, int(req_s), req_s, p99 / 2, p99, 0, 1.0)


def results(cells: list[Cell]) -> RunResults:
    return RunResults(settings=SETTINGS, environment=ENVIRONMENT, cells=cells, all_cells=cells)


def target_row(run: RunResults, title_start: str) -> str:
    rows = [line for line in report.target_table(run) if line.startswith(f"| {title_start}")]
    assert len(rows) == 1, rows
    return rows[0]


def test_merged_rows_fill_the_cap_with_whole_requests() -> None:
    assert merged_rows(1, 8) == 8
    assert merged_rows(1, 32) == 32
    assert merged_rows(1, 128) == 64
    assert merged_rows(32, 8) == 64  # two 32-row requests
    assert merged_rows(48, 8) == 48  # two would not fit: alone
    assert merged_rows(128, 32) == 128  # over the cap: alone
    assert merged_rows(1, 1) == 1


def test_a_merged_cell_counts_request_rows() -> None:
    measured = LoadResult(100, 1.0, 0.5, 0.9, 0, 1.0)  # 100 calls of 8 rows in 1 s
    merged = _merged_cell(1, 8, 8, measured)
    assert merged.contender == IN_PROCESS_MERGED
    assert (merged.batch, merged.concurrency) == (1, 8)
    assert merged.rows_per_s == 800 and merged.rows_per_cpu_s == 800
    assert merged.p99_ms == 0.9


def test_batch_1_goal_needs_both_the_rate_and_the_p99() -> None:
    title = "ours JSON vs in-process ORT batch-1 loop"
    fast_but_late = [cell(IN_PROCESS, 1, 1, 1000), cell("ours (defaults) json", 1, 8, 2000, 9.0)]
    row = target_row(results(fast_but_late), title)
    assert "2.00x" in row and "**no**" in row and "p99 9.00 ms" in row
    fast_and_quick = [cell(IN_PROCESS, 1, 1, 1000), cell("ours (defaults) json", 1, 8, 2000, 4.0)]
    row = target_row(results(fast_and_quick), title)
    assert "**no**" not in row and "| yes |" in row


def test_batch_1_at_32_connections_is_judged_against_in_process_batch_32() -> None:
    cells = [
        cell(IN_PROCESS, 1, 1, 3000),
        cell(IN_PROCESS, 32, 1, 300),  # 9,600 rows/s
        cell("ours (defaults) json", 1, 32, 4800, 20.0),
    ]
    row = target_row(results(cells), "ours JSON, batch 1, c=32")
    assert "0.50x" in row and "9,600 rows/s" in row and "| yes |" in row


def test_every_figure_in_the_targets_carries_its_p99() -> None:
    cells = [cell(IN_PROCESS, 32, 1, 100, 12.5), cell("ours (defaults) json", 32, 8, 95, 40.0)]
    row = target_row(results(cells), "ours JSON vs in-process ORT, batch 32")
    assert "p99 40.00 ms" in row and "p99 12.50 ms" in row


def test_the_merged_limit_is_a_table_row_but_not_a_ratio_column() -> None:
    cells = [
        cell(IN_PROCESS, 1, 1, 3000),
        cell(IN_PROCESS_MERGED, 1, 8, 9000),
        cell("ours (defaults) json", 1, 8, 2000),
    ]
    text = report.render(results(cells), "python -m bench")
    assert f"| {IN_PROCESS_MERGED} | 8 | 9,000 |" in text
    ratio_header = next(line for line in text.splitlines() if line.startswith("| ÷ |"))
    assert IN_PROCESS_MERGED not in ratio_header
