"""What one benchmark run produced, and its JSON form (bench/results/latest.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IN_PROCESS = "in-process ORT"


@dataclass(frozen=True)
class Cell:
    """One contender at one batch size and one concurrency level."""

    contender: str  # e.g. "ours (defaults) binary", "mlserver json", IN_PROCESS
    batch: int
    concurrency: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float  # CPU time the server (or the in-process loop) used during the cell

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.batch

    @property
    def rows_per_cpu_s(self) -> float:
        """Work per CPU-second: unlike wall-clock rates, barely moved by background load."""
        return self.requests * self.batch / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def valid(self) -> bool:
        return self.errors == 0 and self.requests > 0


def wall(cell: Cell) -> float:
    """Rows per wall-clock second."""
    return cell.rows_per_s


def cpu(cell: Cell) -> float:
    """Rows per CPU-second of the server."""
    return cell.rows_per_cpu_s


@dataclass
class RunResults:
    settings: dict[str, Any]
    environment: dict[str, str]
    cells: list[Cell] = field(default_factory=list)  # the median round of each cell
    all_cells: list[Cell] = field(default_factory=list)  # every round, in measuring order
    # contender or server -> why it was not measured (or why it failed the label check)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    # load generator against a do-nothing endpoint: (concurrency, req/s)
    ceiling: tuple[int, float] | None = None
    image_report: str | None = None

    def contenders(self) -> list[str]:
        return list(dict.fromkeys(cell.contender for cell in self.cells))

    def best(
        self, contender: str, batch: int, metric: Callable[[Cell], float] | None = None
    ) -> Cell | None:
        """The contender's valid cell at this batch size that scores highest on `metric`."""
        candidates = [
            c for c in self.cells if c.contender == contender and c.batch == batch and c.valid
        ]
        return max(candidates, key=metric or wall, default=None)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunResults:
        raw = json.loads(path.read_text())
        raw["cells"] = [Cell(**cell) for cell in raw["cells"]]
        raw["all_cells"] = [Cell(**cell) for cell in raw["all_cells"]]
        if raw.get("ceiling") is not None:
            raw["ceiling"] = tuple(raw["ceiling"])
        return cls(**raw)
