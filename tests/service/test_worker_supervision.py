"""The supervisor's decisions (service/workers.py), with stand-in worker processes and a fake
clock: which deaths restart a worker, when the restart limit stops them all, and the exit code
a failed drain leaves. Promised in service/workers.py's docstring:

- a worker that dies while or before serving is started again, keeping its history;
- more than RESTART_LIMIT deaths within RESTART_WINDOW_S stop them all with exit 1 (deaths
  further apart than the window do not add up);
- SIGTERM: every worker gets SIGTERM; the supervisor exits 0 once all exited 0, nonzero when a
  worker's drain failed;
- a worker that exits with an error before it serves stops them all, with its code.

Real pipes carry the ready byte; only the processes and the clock are stand-ins."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from service import workers
from service.settings import Settings

MAX_STARTS = 60  # a supervisor that never gives up is stopped here, and the test fails


@dataclass
class Script:
    """What the n-th started process of one worker index does."""

    ready: bool = True  # writes the ready byte at once
    polls_alive: int = 1  # polls it answers "running" before `code`
    code: int | None = -signal.SIGKILL  # None: runs until it gets SIGTERM
    on_sigterm: int = 0  # its exit code once it got SIGTERM


@dataclass
class FakeProcess:
    index: int
    script: Script
    clock: FakeClock
    pid: int
    hook: Callable[[], None] | None = None  # runs at its first poll
    signals: list[int] = field(default_factory=list)
    polls: int = 0
    code: int | None = None

    def poll(self) -> int | None:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        if self.code is not None:
            return self.code
        if self.signals:
            self.code = self.script.on_sigterm
        elif self.script.code is not None:
            self.polls += 1
            if self.polls > self.script.polls_alive:
                self.code = self.script.code
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


class FakeClock:
    """time.monotonic and time.sleep for the supervisor; a supervisor still watching after
    HORIZON_S of this clock is stuck, and the test fails."""

    HORIZON_S = 100_000.0

    def __init__(self) -> None:
        self.start = self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now - self.start > self.HORIZON_S:
            raise AssertionError("the supervisor never stopped")


class Launcher:
    """Stands in for subprocess.Popen: each worker index follows its list of scripts (the last
    one repeats); `on_start(n)` runs when the n-th started process is first watched (e.g. a
    SIGTERM to the supervisor)."""

    def __init__(self, clock: FakeClock, scripts: dict[int, list[Script]]) -> None:
        self.clock = clock
        self.scripts = scripts
        self.started: list[FakeProcess] = []
        self.on_start: Callable[[int], None] = lambda count: None

    def __call__(self, command: list[str], pass_fds: tuple[int, ...], **_: Any) -> FakeProcess:
        index = int(command[3])
        earlier = sum(1 for process in self.started if process.index == index)
        plan = self.scripts[index]
        script = plan[min(earlier, len(plan) - 1)]
        if script.ready:
            os.write(pass_fds[2], b"1")
        count = len(self.started) + 1
        process = FakeProcess(index, script, self.clock, pid=3999 + count)
        process.hook = lambda: self.on_start(count)
        self.started.append(process)
        if count > MAX_STARTS:
            raise AssertionError("the supervisor kept restarting")
        return process

    def starts(self, index: int) -> int:
        return sum(1 for process in self.started if process.index == index)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("service.workers.time.monotonic", fake.monotonic)
    monkeypatch.setattr("service.workers.time.sleep", fake.sleep)
    return fake


@pytest.fixture(autouse=True)
def signal_handlers() -> Iterator[None]:
    """run() installs SIGTERM/SIGINT handlers: put pytest's back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def supervisor(
    monkeypatch: pytest.MonkeyPatch, launcher: Launcher, count: int
) -> workers._Supervisor:
    monkeypatch.setattr("service.workers.subprocess.Popen", launcher)
    settings = cast(Settings, SimpleNamespace(workers=count, host="127.0.0.1", port=8000))
    return workers._Supervisor(settings, ["mlp"], socket.socket(), metrics_fd=-1)


def run(
    monkeypatch: pytest.MonkeyPatch,
    launcher: Launcher,
    count: int = 1,
    sigterm_at_start: int | None = None,
) -> int:
    """The supervisor's exit code; with `sigterm_at_start`, it gets SIGTERM as the worker
    start of that number (all workers counted) begins."""
    chief = supervisor(monkeypatch, launcher, count)

    def stop_at(starts: int) -> None:
        if starts == sigterm_at_start:
            chief._stop(signal.SIGTERM, None)

    launcher.on_start = stop_at
    try:
        return chief.run()
    finally:
        chief._sock.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ---- the restart limit -----------------------------------------------------------------------


def test_a_worker_that_keeps_dying_is_restarted_up_to_the_limit_then_all_stop(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Deaths a poll apart (0.5 s): the first RESTART_LIMIT are restarted, the next one is
    one too many within the window: exit 1, and a line that says so."""
    caplog.set_level(logging.INFO, "service.workers")
    launcher = Launcher(clock, {0: [Script()], 1: [Script(code=None)]})
    assert run(monkeypatch, launcher, count=2) == 1
    assert launcher.starts(0) == workers.RESTART_LIMIT + 1
    assert launcher.starts(1) == 1
    assert launcher.started[1].signals == [signal.SIGTERM]  # the healthy one is stopped too
    lines = errors(caplog)
    assert lines[-1] == (
        f"worker 0 died {workers.RESTART_LIMIT + 1} times within "
        f"{workers.RESTART_WINDOW_S:.0f} s; stopping"
    )
    assert sum("starting it again" in line for line in lines) == workers.RESTART_LIMIT


def test_deaths_further_apart_than_the_window_never_add_up(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """A worker that dies once every window and a bit keeps being restarted: three times the
    limit, then SIGTERM stops the supervisor with exit 0."""
    polls = int(workers.RESTART_WINDOW_S / workers.POLL_S) + 2  # a death every ~61 s
    launcher = Launcher(clock, {0: [Script(polls_alive=polls)]})
    wanted = 3 * workers.RESTART_LIMIT
    assert run(monkeypatch, launcher, sigterm_at_start=wanted) == 0
    assert launcher.starts(0) == wanted


def test_old_deaths_leave_the_window(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """RESTART_LIMIT quick deaths, a long healthy run (past the window) that ends in a death,
    then RESTART_LIMIT - 1 quick deaths: never more than the limit within one window, so
    never stopped."""
    quick = [Script() for _ in range(workers.RESTART_LIMIT)]
    healthy = Script(polls_alive=int(2 * workers.RESTART_WINDOW_S / workers.POLL_S))
    launcher = Launcher(clock, {0: [*quick, healthy, *quick[1:], Script(code=None)]})
    total = 2 * workers.RESTART_LIMIT + 1
    assert run(monkeypatch, launcher, sigterm_at_start=total) == 0
    assert launcher.starts(0) == total


def test_each_worker_has_its_own_restart_history(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """Two workers dying by turns: together more than the limit within the window, each alone
    not; both keep being restarted."""
    per_worker = workers.RESTART_LIMIT
    dying = [Script() for _ in range(per_worker)]
    launcher = Launcher(clock, {0: [*dying, Script(code=None)], 1: [*dying, Script(code=None)]})
    assert run(monkeypatch, launcher, count=2, sigterm_at_start=2 * (per_worker + 1)) == 0
    assert (launcher.starts(0), launcher.starts(1)) == (per_worker + 1, per_worker + 1)


def test_a_worker_killed_before_it_serves_is_restarted(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "service.workers")
    launcher = Launcher(clock, {0: [Script(ready=False), Script(code=None)]})
    assert run(monkeypatch, launcher, sigterm_at_start=2) == 0
    assert launcher.starts(0) == 2
    assert any(
        line.startswith("worker 0 (pid 4000) died with -9 before serving; starting it again")
        for line in errors(caplog)
    )


def test_a_worker_that_exits_while_serving_is_restarted(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Exit code 3 after the ready byte: not a bad model, so started again."""
    caplog.set_level(logging.INFO, "service.workers")
    launcher = Launcher(clock, {0: [Script(code=3), Script(code=None)]})
    assert run(monkeypatch, launcher, sigterm_at_start=2) == 0
    assert launcher.starts(0) == 2
    assert "worker 0 (pid 4000) died with 3 while serving; starting it again" in errors(caplog)


def test_an_error_before_serving_stops_all_with_its_code(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "service.workers")
    launcher = Launcher(clock, {0: [Script(code=None)], 1: [Script(ready=False, code=4)]})
    assert run(monkeypatch, launcher, count=2) == 4
    assert launcher.starts(1) == 1  # another try would fail the same way
    assert launcher.started[0].signals == [signal.SIGTERM]
    assert "worker 1 exited with 4 before serving; stopping" in errors(caplog)


# ---- stopping ----------------------------------------------------------------------------------


def stopped(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, codes: list[int]
) -> tuple[int, Launcher]:
    """Workers that serve until SIGTERM and then exit with `codes`; SIGTERM once all started."""
    scripts = {index: [Script(code=None, on_sigterm=code)] for index, code in enumerate(codes)}
    launcher = Launcher(clock, scripts)
    return run(monkeypatch, launcher, len(codes), sigterm_at_start=len(codes)), launcher


def test_sigterm_reaches_every_worker_and_a_clean_drain_exits_0(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "service.workers")
    code, launcher = stopped(monkeypatch, clock, [0, 0, 0])
    assert code == 0
    assert [process.signals for process in launcher.started] == [[signal.SIGTERM]] * 3
    assert len(launcher.started) == 3  # nobody restarted while stopping
    assert errors(caplog) == []


def test_a_worker_stopped_by_sigterm_itself_is_a_clean_stop(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """Killed by the SIGTERM before it served (exit -15): stopped at once, not a failure."""
    assert stopped(monkeypatch, clock, [0, -signal.SIGTERM])[0] == 0


@pytest.mark.parametrize("failed", [1, 3, -signal.SIGKILL])
def test_a_failed_drain_makes_the_exit_code_nonzero(
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    failed: int,
) -> None:
    caplog.set_level(logging.INFO, "service.workers")
    code, launcher = stopped(monkeypatch, clock, [0, failed, 0])
    assert code == 1
    assert len(launcher.started) == 3  # not restarted
    assert f"worker 1 exited with {failed} while stopping" in errors(caplog)


def test_the_first_failure_code_is_kept(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """A bad model stops them all with its code (4); a drain failing afterwards keeps it."""
    launcher = Launcher(
        clock, {0: [Script(code=None, on_sigterm=1)], 1: [Script(ready=False, code=4)]}
    )
    assert run(monkeypatch, launcher, count=2) == 4
