"""What one benchmark run produced, and its JSON form (bench/results/latest.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IN_PROCESS = "in-process ORT"
# The merged-batch limit: in-process ORT at the rows a batching server can merge at this
# concurrency (min(batch x connections, MERGE_CAP_ROWS), a request over the cap alone),
# reported per request row: no server on the same core can pass it.
IN_PROCESS_MERGED = "in-process ORT, merged batch"
MERGE_CAP_ROWS = 64  # ours' default MAX_BATCH_SIZE (service/settings.py)
REFERENCES = (IN_PROCESS, IN_PROCESS_MERGED)


def merged_rows(batch: int, concurrency: int, cap: int = MERGE_CAP_ROWS) -> int:
    """The rows one merged run holds when `concurrency` requests of `batch` rows all wait:
    as many whole requests as fit under `cap` (a request over it runs alone)."""
    return batch * max(1, min(concurrency, cap // batch))


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
