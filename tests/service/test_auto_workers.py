"""WORKERS=auto: parsed, decided from CPUs and memory (a pure function, fed fake cgroup files
and figures), and one real start on 127.0.0.1."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from service.auto_workers import (
    MIB,
    MemoryLimit,
    memory_limit,
    plan_workers,
    worker_bytes,
)
from service.cpus import usable_cpu_count
from service.setting_values import AUTO_WORKERS
from service.settings import SettingsError, load_settings
from tests.service.live_server import LiveServer, spawn, wait_ready

GIB = 1024 * MIB
MODELS = 100 * MIB  # model files in all: 128 + 2 x 100 = 328 MiB per worker


@pytest.mark.parametrize("raw", ["auto", "AUTO", " Auto "])
def test_auto_is_parsed(raw: str) -> None:
    assert load_settings({"WORKERS": raw}).workers == AUTO_WORKERS
    assert load_settings({"WORKERS": "3"}).workers == 3


@pytest.mark.parametrize("raw", ["0", "65", "all"])
def test_other_words_and_counts_out_of_range_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"WORKERS": raw})
    assert str(error.value) == f"invalid WORKERS={raw!r}: must be auto or an integer from 1 to 64"


def test_one_worker_per_cpu_when_memory_holds_them() -> None:
    assert worker_bytes(MODELS) == 328 * MIB
    plenty = MemoryLimit(8 * GIB, "cgroup memory.max")
    plan = plan_workers(4, plenty, MODELS)
    assert (plan.workers, plan.reduced) == (4, False)
    assert plan.reason == "WORKERS=auto: 4 workers, one per usable CPU"
    unknown = plan_workers(4, None, MODELS)
    assert (unknown.workers, unknown.reduced) == (4, False)
    assert plan_workers(200, MemoryLimit(1 << 50, "host MemAvailable"), 0).workers == 64


def test_fewer_workers_when_memory_would_not_hold_them() -> None:
    """80% of 1 GiB holds two workers of 328 MiB, not four; the reason says so."""
    plan = plan_workers(4, MemoryLimit(GIB, "cgroup memory.max"), MODELS)
    assert (plan.workers, plan.reduced) == (2, True)
    assert plan.reason == (
        "WORKERS=auto: 2 workers, not 4 (one per usable CPU): each needs about 328 MiB "
        "(128 MiB + 2 x 100.0 MiB of model files), and 80% of the memory limit "
        "(1024 MiB, cgroup memory.max) holds 2"
    )
    tiny = plan_workers(4, MemoryLimit(100 * MIB, "cgroup memory.max"), MODELS)
    assert (tiny.workers, tiny.reduced) == (1, True)  # never none
    assert "holds 0" in tiny.reason


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_memory_limit_is_the_tightest_cgroup_limit_or_the_hosts(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    write(proc / "self" / "cgroup", "0::/kubepods.slice/pod1/app\n")
    write(proc / "meminfo", "MemTotal:  16000000 kB\nMemAvailable:   8388608 kB\n")
    assert memory_limit(cgroup, proc) == MemoryLimit(8 * GIB, "host MemAvailable")
    write(cgroup / "kubepods.slice" / "pod1" / "memory.max", f"{GIB}\n")  # the pod's limit
    write(cgroup / "kubepods.slice" / "pod1" / "app" / "memory.max", "max\n")
    write(cgroup / "kubepods.slice" / "memory.max", f"{4 * GIB}\n")
    write(cgroup / "kubepods.slice" / "other" / "memory.max", f"{MIB}\n")  # a sibling
    assert memory_limit(cgroup, proc) == MemoryLimit(GIB, "cgroup memory.max")


def test_cgroup_v1_memory_limit_and_its_no_limit_value(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    write(proc / "self" / "cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    folder = cgroup / "memory" / "docker" / "abc"
    write(folder / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    assert memory_limit(cgroup, proc) is None  # and no /proc/meminfo either
    write(folder / "memory.limit_in_bytes", f"{2 * GIB}\n")
    assert memory_limit(cgroup, proc) == MemoryLimit(2 * GIB, "cgroup memory.limit_in_bytes")


def test_a_real_start_with_workers_auto(model_repository: Path, tmp_path: Path) -> None:
    """The supervisor counts the workers, says so in one line, and that many serve."""
    log = tmp_path / "log"
    process, port = spawn({"MODEL_REPOSITORY": str(model_repository), "WORKERS": "auto"}, log)
    server = LiveServer(process, port, log)
    try:
        wait_ready(server)
        decided = re.search(r"WORKERS=auto: (\d+) workers", server.log())
        assert decided, server.log()
        workers = int(decided.group(1))
        assert 1 <= workers <= usable_cpu_count()
        if workers > 1:
            for _ in range(600):  # the supervisor says when every worker accepts connections
                if f"all {workers} workers are serving" in server.log():
                    break
                time.sleep(0.05)
            assert f"all {workers} workers are serving" in server.log(), server.log()
        assert httpx.get(f"{server.base}/v2/models/mlp/ready").status_code == 200
        assert server.log().count("WORKERS=auto:") == 1
    finally:
        assert server.stop() == 0
