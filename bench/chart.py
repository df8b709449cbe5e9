"""Draw throughput (rows/s) and p99 latency per contender, one column per batch size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np

from bench.results import IN_PROCESS, Cell, RunResults

# (title, y label, log scale, value) per chart row
PANELS: tuple[tuple[str, str, bool, Callable[[Cell], float]], ...] = (
    ("throughput", "rows/s", False, lambda cell: cell.rows_per_s),
    ("p99 latency (log)", "ms", True, lambda cell: cell.p99_ms),
    ("work per server CPU-second", "rows/CPU-s", False, lambda cell: cell.rows_per_cpu_s),
)


def draw(results: RunResults, path: Path) -> None:
    batches: list[int] = results.settings["batches"]
    concurrencies: list[int] = results.settings["concurrencies"]
    contenders = results.contenders()
    figure, axes = plt.subplots(
        len(PANELS),
        len(batches),
        figsize=(5.5 * len(batches), 4 * len(PANELS)),
        squeeze=False,
        constrained_layout=True,
    )
    width = 0.8 / len(concurrencies)
    positions = np.arange(len(contenders))
    for column, batch in enumerate(batches):
        for row, (title, unit, log_scale, value) in enumerate(PANELS):
            axis = axes[row][column]
            for index, concurrency in enumerate(concurrencies):
                cells = [_cell(results, name, batch, concurrency) for name in contenders]
                heights = [value(cell) if cell else 0.0 for cell in cells]
                offset = positions + (index - (len(concurrencies) - 1) / 2) * width
                axis.bar(offset, heights, width, label=f"c={concurrency}")
            axis.set_title(f"batch {batch}: {title}")
            axis.set_ylabel(unit)
            if log_scale:
                axis.set_yscale("log")
            axis.set_xticks(positions, contenders, rotation=35, ha="right", fontsize=8)
            axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(title="connections (in-process: 1 loop)", fontsize=8)
    figure.suptitle(f"Same model, one core per server — {results.environment['date_utc']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _cell(results: RunResults, name: str, batch: int, concurrency: int) -> Cell | None:
    """The cell to plot; in-process ORT has one loop, shown in every concurrency group."""
    for cell in results.cells:
        same_cell = cell.concurrency == concurrency or name == IN_PROCESS
        if cell.contender == name and cell.batch == batch and cell.valid and same_cell:
            return cell
    return None
