"""How many CPUs this process may really use: affinity and cgroup quota, not the host count.

ONNX Runtime defaults to the host's core count, which oversubscribes a container limited
by ``--cpus`` (a cgroup quota) or ``--cpuset-cpus`` (affinity). The quota that binds is the
smallest one on the way from this process's own cgroup (``/proc/self/cgroup``) up to the
root: a limit set on a parent (a systemd slice, a Kubernetes pod) caps its children too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
# Where cgroup v1 mounts the cpu controller; the last entry is a v1-only /sys/fs/cgroup.
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu", ".")


def own_cgroups(
    proc_root: Path = PROC_ROOT, controller: str = "cpu"
) -> tuple[PurePosixPath, PurePosixPath]:
    """This process's cgroup paths: (v2 unified, v1 `controller`); "/" when unknown."""
    v2 = v1 = PurePosixPath("/")
    try:
        lines = (proc_root / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = _safe(path)
        elif controller in controllers.split(","):
            v1 = _safe(path)
    return v2, v1


def _safe(path: str) -> PurePosixPath:
    # Outside our cgroup namespace the kernel writes "/../.."; only the root is visible then.
    pure = PurePosixPath(path)
    return pure if pure.is_absolute() and ".." not in pure.parts else PurePosixPath("/")


def up_to(base: Path, cgroup: PurePosixPath) -> Iterator[Path]:
    """``base/cgroup`` and each of its parents down to ``base`` itself."""
    folder = base.joinpath(*cgroup.parts[1:])
    yield folder
    while folder != base:
        folder = folder.parent
        yield folder


def _v2_quota(folder: Path) -> float | None:
    parts = read_or_empty(folder / "cpu.max").split()
    return _ratio(parts[0], parts[1]) if len(parts) >= 2 and parts[0] != "max" else None


def _v1_quota(folder: Path) -> float | None:
    return _ratio(
        read_or_empty(folder / "cpu.cfs_quota_us"), read_or_empty(folder / "cpu.cfs_period_us")
    )


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # absent at this level (or not mounted in this container)
        return ""


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for "no limit"
        return None
    return quota_us / period_us


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_root: Path = PROC_ROOT) -> float | None:
    """CPUs allowed by the tightest cgroup quota (v2 ``cpu.max`` or v1 CFS files) from our
    cgroup up to the root; None if unlimited."""
    v2, v1 = own_cgroups(proc_root)
    quotas = [_v2_quota(folder) for folder in up_to(cgroup_root, v2)]
    for mount in V1_CPU_MOUNTS:
        quotas += [_v1_quota(folder) for folder in up_to(cgroup_root / mount, v1)]
    return min((quota for quota in quotas if quota is not None), default=None)


def usable_cpu_count(
    affinity: set[int] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_root: Path = PROC_ROOT,
) -> int:
    """min(CPUs in our affinity mask, cgroup quota rounded down), and at least 1."""
    cpus = len(affinity if affinity is not None else os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root, proc_root)
    if quota is not None:
        # Rounded down: 1.5 CPUs of quota cannot keep two busy threads running.
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)
