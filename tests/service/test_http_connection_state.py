"""One connection, several requests: the connection layer's per-request state
(service/http.py), on a virtual clock.

The protocol class the server runs (`protocol_class`) serves a small ASGI application over
one end of a socket pair; the test is the client at the other end, on an event loop whose
clock jumps to the next timer (tests/service/virtual_clock.py). So the moment a 408 or a
close comes is exact, and nothing here waits in real time. What service/http.py promises:

- MAX_HEADER_BYTES is a budget per request: the bytes of each request's line and headers are
  counted from zero, whatever came before on the connection (other heads, bodies, trailers);
  a chunked body's trailers have a budget of their own, per request too;
- HEADER_TIMEOUT_S runs from the connection's start for its first request, from the first
  byte of each later one; never while the server works on a request, never while the
  connection is idle between requests (KEEP_ALIVE_TIMEOUT_S then), except that bytes which
  begin no request (stray CRLFs) bring it back;
- pipelined requests are each answered, in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.http import LINGER_BYTES, LINGER_S, protocol_class
from service.settings import Settings
from tests.service.virtual_clock import VirtualClockLoop

LIMIT = 1024  # MAX_HEADER_BYTES
HEADER_S = 1.0  # HEADER_TIMEOUT_S
IDLE_S = 30.0  # KEEP_ALIVE_TIMEOUT_S
WORK_S = 5.0  # how long /slow keeps the server busy: five header timeouts
PATIENCE_S = 300.0  # virtual seconds to wait for an answer; never reached when it works
T = TypeVar("T")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers {"path": ..., "body": <bytes read>}; /slow works WORK_S first."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(WORK_S)
    payload = orjson.dumps({"path": scope["path"], "body": size})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Client:
    """The client end of one connection to the protocol under test."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: asyncio.BaseTransport,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.server = server  # the server's end: whether it has closed the connection

    def server_closed(self) -> bool:
        return self.server.is_closing()

    async def send(self, data: bytes) -> None:
        """Write `data` and let the server read it on its own (a separate data_received)."""
        self.writer.write(data)
        await self.writer.drain()
        await asyncio.sleep(0.001)

    async def response(self) -> tuple[int, dict[str, Any]]:
        """The next response: its status and its JSON body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), PATIENCE_S)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split(" ", 2)[1]), orjson.loads(body)

    async def closed(self) -> bytes:
        """Read until the server closes the connection: what it sent before closing."""
        sent = b""
        while data := await asyncio.wait_for(self.reader.read(65536), PATIENCE_S):
            sent += data
        return sent


def serving(scenario: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
    """Run `scenario` against one new connection, on a virtual clock starting at 0."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        settings = SimpleNamespace(
            max_header_bytes=LIMIT, header_timeout_s=HEADER_S, keep_alive_timeout_s=IDLE_S
        )
        protocol = protocol_class(cast(Settings, settings))
        config = Config(app=app, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        ours, theirs = socket.socketpair()
        server, _ = await loop.connect_accepted_socket(
            lambda: protocol(config, state, {}, loop), ours
        )
        reader, writer = await asyncio.open_connection(sock=theirs)
        try:
            return await scenario(Client(reader, writer, server))
        finally:
            writer.close()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main())


def now() -> float:
    return asyncio.get_running_loop().time()


def head(path: str, size: int, method: str = "OPTIONS", extra: str = "") -> bytes:
    """A request line and headers of exactly `size` bytes, the blank line not counted."""
    start = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}X-Fill: "
    fill = size - len(start) - 2
    assert fill >= 0
    return (start + "a" * fill + "\r\n").encode()


async def in_two_parts(client: Client, path: str, size: int) -> None:
    """A request whose `size` bytes of line and headers arrive first, its blank line after."""
    await client.send(head(path, size))
    await client.send(b"\r\n")


# ---- the header byte budget ---------------------------------------------------------------------


def test_each_request_on_a_connection_has_a_header_budget_of_its_own() -> None:
    """Four heads of 70% of MAX_HEADER_BYTES on one connection: each is within the limit,
    together they are far over it."""

    async def scenario(client: Client) -> list[tuple[int, dict[str, Any]]]:
        answers = []
        for index in range(4):
            await in_two_parts(client, f"/r{index}", LIMIT * 7 // 10)
            answers.append(await client.response())
        return answers

    answers = serving(scenario)
    assert answers == [(200, {"path": f"/r{index}", "body": 0}) for index in range(4)]


def test_a_head_of_exactly_the_limit_is_served_one_byte_more_is_refused() -> None:
    """Counted as it arrives: the line and headers before the blank line, in bytes."""

    async def scenario(client: Client) -> list[int]:
        statuses = []
        for _ in range(2):
            await in_two_parts(client, "/edge", LIMIT)
            statuses.append((await client.response())[0])
        await in_two_parts(client, "/over", LIMIT + 1)
        status, body = await client.response()
        assert "MAX_HEADER_BYTES=1024" in body["error"]
        assert await client.closed() == b""
        return [*statuses, status]

    assert serving(scenario) == [200, 200, 431]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "OPTIONS"])
def test_a_whole_head_of_exactly_the_limit_is_served_one_byte_more_is_refused(
    method: str,
) -> None:
    """A head that arrives in one piece is measured once it is in: the same edge, whatever
    the method's length."""

    async def scenario(client: Client) -> list[int]:
        statuses = []
        for size in (LIMIT, LIMIT, LIMIT + 1):
            await client.send(head("/whole", size, method, "Content-Length: 0\r\n") + b"\r\n")
            statuses.append((await client.response())[0])
        return statuses

    assert serving(scenario) == [200, 200, 431]


def test_the_end_of_a_body_does_not_count_toward_the_next_head() -> None:
    """A body's last part, larger than MAX_HEADER_BYTES, arriving on its own: the request it
    ends and the next one are both served."""

    async def scenario(client: Client) -> list[tuple[int, dict[str, Any]]]:
        body = b"b" * (3 * LIMIT)
        await client.send(head("/upload", 200, "POST", f"Content-Length: {len(body)}\r\n"))
        await client.send(b"\r\n" + body[:LIMIT])
        await client.send(body[LIMIT:])
        first = await client.response()
        await in_two_parts(client, "/next", LIMIT * 9 // 10)
        return [first, await client.response()]

    assert serving(scenario) == [
        (200, {"path": "/upload", "body": 3 * LIMIT}),
        (200, {"path": "/next", "body": 0}),
    ]


def chunked_with_trailers(path: str, trailer_bytes: int) -> list[bytes]:
    """A chunked POST whose trailer field is `trailer_bytes` long, in three writes: the head
    and a chunk, the last chunk, the trailers and the blank line."""
    start = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailer = "X-Trailer: " + "t" * (trailer_bytes - len("X-Trailer: \r\n")) + "\r\n"
    return [start.encode() + b"5\r\nhello\r\n", b"0\r\n", trailer.encode() + b"\r\n"]


def test_trailers_have_a_budget_per_request() -> None:
    """Three chunked requests with trailers of 70% of MAX_HEADER_BYTES each, then one with
    trailers over it: the three are served, the fourth refused."""

    async def scenario(client: Client) -> list[int]:
        statuses = []
        for index, size in enumerate([LIMIT * 7 // 10] * 3 + [LIMIT + 100]):
            for part in chunked_with_trailers(f"/t{index}", size):
                await client.send(part)
            status, body = await client.response()
            statuses.append(status)
            if status == 200:
                assert body == {"path": f"/t{index}", "body": 5}
        return statuses

    assert serving(scenario) == [200, 200, 200, 431]


def test_chunk_data_is_no_trailer_whatever_its_size() -> None:
    """A chunked body of four times MAX_HEADER_BYTES, its chunks' data arriving in reads of
    their own: only the fields after the last chunk are trailers, so it is served, and so is
    the next request on the connection."""

    async def scenario(client: Client) -> list[tuple[int, dict[str, Any]]]:
        start = "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        await client.send(start.encode())
        for _ in range(2):
            await client.send(b"%x\r\n" % (2 * LIMIT))
            for _ in range(4):
                await client.send(b"c" * (LIMIT // 2))
            await client.send(b"\r\n")
        await client.send(b"0\r\n\r\n")
        first = await client.response()
        await in_two_parts(client, "/next", LIMIT * 9 // 10)
        return [first, await client.response()]

    assert serving(scenario) == [
        (200, {"path": "/chunks", "body": 4 * LIMIT}),
        (200, {"path": "/next", "body": 0}),
    ]


def test_pipelined_requests_are_answered_in_order_each_within_its_budget() -> None:
    """Three heads of 70% of MAX_HEADER_BYTES and a POST with a body, in one write."""

    async def scenario(client: Client) -> list[tuple[int, dict[str, Any]]]:
        heads = [head(f"/p{index}", LIMIT * 7 // 10) + b"\r\n" for index in range(3)]
        post = head("/p3", 100, "POST", "Content-Length: 4\r\n") + b"\r\nbody"
        await client.send(b"".join(heads) + post)
        return [await client.response() for _ in range(4)]

    assert serving(scenario) == [
        *[(200, {"path": f"/p{index}", "body": 0}) for index in range(3)],
        (200, {"path": "/p3", "body": 4}),
    ]


# ---- the header clock -------------------------------------------------------------------------


def test_the_first_request_s_clock_runs_from_the_connection_s_start() -> None:
    async def scenario(client: Client) -> tuple[float, int]:
        await asyncio.sleep(HEADER_S * 0.6)
        await client.send(b"GET /late HTTP/1.1\r\n")
        status, _ = await client.response()
        return now(), status

    when, status = serving(scenario)
    assert status == 408
    assert when == pytest.approx(HEADER_S, abs=0.01)


def test_a_later_request_s_clock_runs_from_its_first_byte() -> None:
    """Served at 0 s, idle for five header timeouts (within KEEP_ALIVE_TIMEOUT_S), then half
    a request line: its 408 comes HEADER_TIMEOUT_S after that first byte, not earlier."""

    async def scenario(client: Client) -> tuple[float, float, int, str]:
        await in_two_parts(client, "/first", 100)
        assert (await client.response())[0] == 200
        await asyncio.sleep(5 * HEADER_S)
        started = now()
        await client.send(b"GET /second HTTP/1.1\r\n")
        status, body = await client.response()
        return started, now(), status, body["error"]

    started, answered, status, message = serving(scenario)
    assert status == 408
    assert (
        message == f"request line and headers not received within HEADER_TIMEOUT_S={HEADER_S:g} s"
    )
    assert answered - started == pytest.approx(HEADER_S, abs=0.01)


def test_a_request_begun_in_the_same_read_as_a_body_s_end_gets_its_header_clock() -> None:
    """The last bytes of a POST's body and the first line of the next request arrive
    together: that request's clock starts there, and its 408 comes HEADER_TIMEOUT_S later."""

    async def scenario(client: Client) -> tuple[float, float, list[int]]:
        await client.send(head("/post", 200, "POST", "Content-Length: 10\r\n") + b"\r\nhello")
        started = now()
        await client.send(b"world" + b"GET /next HTTP/1.1\r\n")
        statuses = [(await client.response())[0], (await client.response())[0]]
        return started, now(), statuses

    started, answered, statuses = serving(scenario)
    assert statuses == [200, 408]
    assert answered - started == pytest.approx(HEADER_S, abs=0.01)


def test_each_later_request_gets_the_whole_header_time() -> None:
    """Every request's head takes 90% of HEADER_TIMEOUT_S to arrive: together far more than
    one timeout, each within its own. A clock that kept running, or that started at the end
    of the previous reply, would cut one off."""

    async def scenario(client: Client) -> list[int]:
        statuses = []
        for index in range(4):
            if index:
                await asyncio.sleep(HEADER_S * 0.5)  # idle between requests
            await client.send(head(f"/slow-head-{index}", 200))
            await asyncio.sleep(HEADER_S * 0.9)
            await client.send(b"\r\n")
            statuses.append((await client.response())[0])
        return statuses

    assert serving(scenario) == [200] * 4


def test_no_clock_runs_while_the_server_works() -> None:
    """/slow works five header timeouts; the connection is still open and usable after."""

    async def scenario(client: Client) -> list[tuple[int, dict[str, Any]]]:
        await in_two_parts(client, "/slow", 100)
        first = await client.response()
        assert now() >= WORK_S
        await in_two_parts(client, "/after", 100)
        return [first, await client.response()]

    assert serving(scenario) == [
        (200, {"path": "/slow", "body": 0}),
        (200, {"path": "/after", "body": 0}),
    ]


def test_an_idle_connection_is_closed_by_the_keep_alive_clock_only() -> None:
    async def scenario(client: Client) -> tuple[float, float]:
        await in_two_parts(client, "/only", 100)
        assert (await client.response())[0] == 200
        answered = now()
        assert await client.closed() == b""  # closed without a word
        return answered, now()

    answered, closed = serving(scenario)
    assert closed - answered == pytest.approx(IDLE_S, abs=0.01)


def test_bytes_that_begin_no_request_bring_the_header_clock_back() -> None:
    """A stray CRLF two seconds after a reply stops the keep-alive clock: from then on, the
    header clock decides (the connection is closed HEADER_TIMEOUT_S later, not held open)."""

    async def scenario(client: Client) -> tuple[float, float]:
        await in_two_parts(client, "/only", 100)
        assert (await client.response())[0] == 200
        await asyncio.sleep(2.0)
        stray = now()
        await client.send(b"\r\n")
        assert await client.closed() == b""  # no request begun: nobody to answer
        return stray, now()

    stray, closed = serving(scenario)
    assert closed - stray == pytest.approx(HEADER_S, abs=0.01)


# ---- after a refusal -----------------------------------------------------------------------------


def refused_then_sending(rest: int) -> tuple[int, float | None]:
    """A head over MAX_HEADER_BYTES, then `rest` more bytes from the client, in 16 writes:
    the status, and how long after the refusal the server closed (None: not within
    LINGER_S / 2)."""

    async def scenario(client: Client) -> tuple[int, float | None]:
        refused_head = head("/over", LIMIT + 1, "POST", "Content-Length: 0\r\n")
        await client.send(refused_head + b"\r\n")  # refused as a whole, nothing left over
        status, _ = await client.response()
        refused = now()
        piece, last = divmod(rest, 16)
        for size in [piece] * 15 + [piece + last]:
            await client.send(b"r" * size)
        closed = await closing(client, LINGER_S / 2)
        return status, None if closed is None else closed - refused

    return serving(scenario)


async def closing(client: Client, within: float) -> float | None:
    """When the server closes the connection, if it does within `within` seconds."""
    deadline = now() + within
    while not client.server_closed():
        if now() >= deadline:
            return None
        await asyncio.sleep(0.01)
    return now()


def test_a_refused_client_s_unread_bytes_are_dropped_up_to_linger_bytes() -> None:
    """After a refusal the rest of the request is read and dropped, so that closing does not
    reset the answer away: LINGER_BYTES of it at most (then the connection is closed at
    once), else for LINGER_S."""
    status, closed_after = refused_then_sending(LINGER_BYTES)
    assert status == 431
    assert closed_after is not None and closed_after < 0.1  # once the budget is spent

    status, closed_after = refused_then_sending(LINGER_BYTES - 1)
    assert status == 431
    assert closed_after is None  # one byte short: still draining


def test_a_refused_client_that_sends_little_is_closed_after_linger_s() -> None:
    async def scenario(client: Client) -> float:
        await in_two_parts(client, "/over", LIMIT + 1)
        assert (await client.response())[0] == 431
        refused = now()
        await client.send(b"more of the request")
        closed = await closing(client, PATIENCE_S)
        assert closed is not None
        return closed - refused

    assert serving(scenario) == pytest.approx(LINGER_S, abs=0.02)
