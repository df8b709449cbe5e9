"""``WORKERS=auto``: one server process per usable CPU, as many as the memory limit holds.

Every worker loads its own copy of every model, so memory bounds the count as well as CPUs.
A worker is estimated at WORKER_BASE_BYTES (Python, ONNX Runtime and the web stack: 110 MiB
resident measured serving the bundled 5 MiB model) plus MODEL_FACTOR times the size of the
model files (a 64 MiB model peaked at 1.8 times its size while loading, and the workers load
at the same time). All workers together may use MEMORY_SHARE of the memory limit, leaving the
rest for request bodies, tensors and the supervisor. The memory limit is the smallest of the
cgroup limits from this process's cgroup up to the root (v2 ``memory.max``, v1
``memory.limit_in_bytes``) and the memory the host has available (``MemAvailable``).
Stdlib only: the supervisor decides before any worker imports ONNX Runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from service.cpus import (
    CGROUP_ROOT,
    PROC_ROOT,
    own_cgroups,
    read_or_empty,
    up_to,
    usable_cpu_count,
)
from service.repository import discover_models
from service.settings import Settings

log = logging.getLogger("service.workers")
MIB = 1 << 20
WORKER_BASE_BYTES = 128 * MIB
MODEL_FACTOR = 2
MEMORY_SHARE = 0.8
MAX_WORKERS = 64  # WORKERS' own upper bound
# Where cgroup v1 mounts the memory controller; the last entry is a v1-only /sys/fs/cgroup.
V1_MEMORY_MOUNTS = ("memory", ".")
# cgroup v1 writes "no limit" as a huge number (a page-rounded 2**63 - 1).
V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    source: str  # where the figure comes from, for the log line


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    reason: str  # the log line
    reduced: bool  # fewer than one per usable CPU, for lack of memory


def worker_bytes(model_bytes: int) -> int:
    """The memory one worker is estimated to need for models of `model_bytes` in all."""
    return WORKER_BASE_BYTES + MODEL_FACTOR * model_bytes


def plan_workers(cpus: int, memory: MemoryLimit | None, model_bytes: int) -> WorkerPlan:
    """One worker per usable CPU, or as many as MEMORY_SHARE of `memory` holds (at least 1)."""
    wanted = min(cpus, MAX_WORKERS)
    each = worker_bytes(model_bytes)
    per_cpu = f"WORKERS=auto: {wanted} workers, one per usable CPU"
    if memory is None:
        return WorkerPlan(wanted, f"{per_cpu} (no memory limit found)", reduced=False)
    fit = int(memory.bytes * MEMORY_SHARE) // each
    if fit >= wanted:
        return WorkerPlan(wanted, per_cpu, reduced=False)
    workers = max(1, fit)
    reason = (
        f"WORKERS=auto: {workers} workers, not {wanted} (one per usable CPU): each needs about "
        f"{each / MIB:.0f} MiB ({WORKER_BASE_BYTES // MIB} MiB + {MODEL_FACTOR} x "
        f"{model_bytes / MIB:.1f} MiB of model files), and {MEMORY_SHARE:.0%} of the memory "
        f"limit ({memory.bytes / MIB:.0f} MiB, {memory.source}) holds {fit}"
    )
    return WorkerPlan(workers, reason, reduced=True)


def _bytes(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:  # absent, or v2's "max"
        return None
    return value if 0 < value < V1_UNLIMITED else None


def _available(proc_root: Path) -> int | None:
    for line in read_or_empty(proc_root / "meminfo").splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable" and value.split():
            return int(value.split()[0]) * 1024  # kB
    return None


def memory_limit(
    cgroup_root: Path = CGROUP_ROOT, proc_root: Path = PROC_ROOT
) -> MemoryLimit | None:
    """The tightest of the cgroup memory limits (our cgroup up to the root) and the host's
    available memory; None if none is known."""
    v2, v1 = own_cgroups(proc_root, "memory")
    found = [
        MemoryLimit(limit, "cgroup memory.max")
        for folder in up_to(cgroup_root, v2)
        if (limit := _bytes(read_or_empty(folder / "memory.max"))) is not None
    ]
    for mount in V1_MEMORY_MOUNTS:
        found += [
            MemoryLimit(limit, "cgroup memory.limit_in_bytes")
            for folder in up_to(cgroup_root / mount, v1)
            if (limit := _bytes(read_or_empty(folder / "memory.limit_in_bytes"))) is not None
        ]
    if (available := _available(proc_root)) is not None:
        found.append(MemoryLimit(available, "host MemAvailable"))
    return min(found, key=lambda limit: limit.bytes, default=None)


def resolve_workers(settings: Settings) -> Settings:
    """`settings` with WORKERS=auto replaced by a count, logged with its reason (raises
    ModelSourceError when the models cannot be found)."""
    model_bytes = sum(source.path.stat().st_size for source in discover_models(settings))
    plan = plan_workers(usable_cpu_count(), memory_limit(), model_bytes)
    log.log(logging.WARNING if plan.reduced else logging.INFO, "%s", plan.reason)
    return replace(settings, workers=plan.workers)
