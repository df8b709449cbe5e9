"""An asyncio event loop on a virtual clock: timers fire in order, instantly.

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        runner.run(scenario())        # asyncio.sleep(30) returns at once, loop.time() is +30

`loop.time()` starts at 0 and moves only when the loop has nothing to run but a timer: then
it jumps to that timer. `asyncio.sleep`, `wait_for`, `asyncio.timeout` and `call_later` all
read it, so the order and spacing of what a coroutine does in time can be measured exactly,
and a 30 s back-off costs no wall-clock time. Real I/O still works (the selector is polled
first), but nothing should wait on a thread or a socket meanwhile: the clock would jump past
it. With nothing scheduled at all, the loop waits for real I/O for at most IDLE_LIMIT_S and
then fails (a deadlock, not a hang).
"""

from __future__ import annotations

import asyncio
import selectors

IDLE_LIMIT_S = 60.0


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer at all: only real I/O (a thread's wake-up) can come
            ready = super().select(IDLE_LIMIT_S)
            if not ready:
                raise RuntimeError(f"virtual clock: nothing scheduled for {IDLE_LIMIT_S} s")
            return ready
        self.now += timeout  # the next timer is due
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._selector_clock = _JumpingSelector()
        super().__init__(self._selector_clock)

    def time(self) -> float:
        return self._selector_clock.now
