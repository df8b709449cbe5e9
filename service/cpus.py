"""How many CPUs this process may really use: affinity and cgroup quota, not the host count.

ONNX Runtime defaults to the host's core count, which oversubscribes a container limited
by ``--cpus`` (a cgroup quota) or ``--cpuset-cpus`` (affinity).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 CFS files); None if unlimited."""
    v2 = root / "cpu.max"
    if v2.is_file():
        parts = v2.read_text().split()
        if len(parts) >= 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        quota, period = folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"
        if quota.is_file() and period.is_file():
            return _ratio(quota.read_text(), period.read_text())
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for "no limit"
        return None
    return quota_us / period_us


def usable_cpu_count(affinity: set[int] | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """min(CPUs in our affinity mask, cgroup quota rounded down), and at least 1."""
    cpus = len(affinity if affinity is not None else os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        # Rounded down: 1.5 CPUs of quota cannot keep two busy threads running.
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)
