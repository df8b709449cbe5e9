"""Admission control: bounded in-flight requests (503), bounded request bodies (413), and
bounded time to receive a body (408), so stalled uploads cannot hold in-flight slots."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive

from service.errors import BadRequest, PayloadTooLarge, RequestTimeout, Unavailable

RETRY_AFTER_SECONDS = "1"


class AdmissionGate:
    """Counts requests in flight; beyond the limit they are refused at once, not queued.

    Only touched from the event loop thread, so a plain counter is enough.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise Unavailable(
                f"server is at MAX_INFLIGHT={self.limit} requests in flight; retry later",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1


def _already_received(receive: Receive) -> bool:
    """True when the whole body is in already, so reading it cannot wait (no clock to set).
    uvicorn's `receive` is its request cycle's bound method, whose `more_body` says so; any
    other server's body is read on the clock."""
    cycle = getattr(receive, "__self__", None)
    return getattr(cycle, "more_body", True) is False and not getattr(cycle, "disconnected", True)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body of {size}+ bytes exceeds MAX_BODY_BYTES={limit}")


async def read_body(
    receive: Receive, declared: bytes | None, limit: int, timeout_s: float
) -> bytes:
    """The whole request body from an ASGI `receive`, refusing (before buffering) anything
    over ``limit`` bytes, or not received within ``timeout_s`` seconds. `declared`: the
    Content-Length header, if any."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    received = _already_received(receive)
    try:
        async with contextlib.nullcontext() if received else asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    # Nobody will read the answer; a 4xx keeps it out of the server-fault counts.
                    raise BadRequest(f"client disconnected after {size} bytes of the body")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:  # chunked uploads declare no length up front
                    raise _too_large(size, limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeout(
            f"request body not complete after BODY_TIMEOUT_S={timeout_s:g} s ({size} bytes)"
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
