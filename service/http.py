"""The HTTP/1.1 connection layer: uvicorn's httptools protocol with limits of our own.

uvicorn leaves three holes that an open port must not have, closed here per connection:

- **Header size** (``MAX_HEADER_BYTES``): llhttp buffers a header line of any length, so a
  64 MB header would be read whole. The bytes of a request's line and headers are counted as
  they arrive; past the limit the client gets 431 and the connection is closed. The trailer
  fields after a chunked body's last chunk are counted the same way, against the same limit.
- **Header read time** (``HEADER_TIMEOUT_S``): a connection that sends nothing, or half a
  request line (slowloris), would otherwise stay open forever. The clock runs from the
  connection's start for its first request, and from the first byte of each later one, until
  its headers are in; never while the server works on a request.
- **Idle keep-alive time** (``KEEP_ALIVE_TIMEOUT_S``): uvicorn's own keep-alive timer, armed
  after each response, stopped by the next request's first byte.
- The body's clock (``BODY_TIMEOUT_S``) is the application's: service/limits.py.

uvicorn also closes every HTTP/1.0 connection after its reply; one whose request says
``Connection: keep-alive`` is kept open here, its replies saying ``Connection: keep-alive``
(every reply of this server has a Content-Length, which HTTP/1.0 keep-alive needs).

Every answer the connection layer gives itself (malformed request, oversized or late headers)
is ``{"error": ...}`` JSON like the application's, never uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.errors import ApiError, BadRequest, HeadersTooLarge, RequestTimeout, error_body
from service.settings import Settings

log = logging.getLogger(__name__)
# Request line framing around the method and the URL: two spaces and "HTTP/1.1\r\n".
_LINE_BYTES = 12
# After a refusal: how long, and how many bytes, the client's unread request is drained
# before closing. Closing with unread data sends a reset, which can destroy the answer in the
# client's buffers before it reads it (a "lingering close", as in nginx).
LINGER_S = 2.0
LINGER_BYTES = 1 << 20
KEEP_ALIVE_HEADER = (b"connection", b"keep-alive")


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is on the protocol."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol, plus header size and header time limits and JSON errors."""

    max_head_bytes: ClassVar[int] = 64 * 1024
    head_timeout_s: ClassVar[float] = 10.0
    keep_alive_timeout_s: ClassVar[float] = 75.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.keep_alive_timeout_s  # type: ignore[assignment]
        self._reading_head = True  # the next bytes belong to a request's line and headers
        self._head_bytes = 0
        self._head_begun = False  # a byte of the current request has arrived
        self._heads = 0  # heads completed on this connection
        self._head_timer: asyncio.TimerHandle | None = None
        self._chunk_waiting = False  # a chunk header came, none of its data yet
        self._trailer_bytes = 0
        self._refusal: ApiError | None = None  # why a parser callback stopped parsing
        self._discard: int | None = None  # lingering: bytes still to drop before closing
        self._linger_timer: asyncio.TimerHandle | None = None

    # ---- connection events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # the first request: from the connection's start

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discard is not None:
            self._discard -= len(data)
            if self._discard <= 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        counted, heads = self._reading_head, self._heads
        # After a chunk header, bytes that bring no chunk data are the last chunk's trailers.
        trailing = self._chunk_waiting and not self._reading_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._refuse(self._refusal or BadRequest(f"invalid HTTP request: {exc}"))
            return
        if trailing and self._chunk_waiting and not self._reading_head:
            self._trailer_bytes += len(data)
            if self._trailer_bytes > self.max_head_bytes:
                self._refuse(self._trailers_too_large())
                return
        # Only chunks wholly inside one head are counted: a chunk that also held the end of a
        # head or of a body goes uncounted (at most one chunk, so still bounded).
        if self._reading_head and counted and heads == self._heads:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(self._too_large(self._head_bytes))
                return
            if self._head_timer is None:
                # Bytes between requests that begin none (stray CRLFs) stopped the
                # keep-alive clock: the header clock takes over, or they could hold it open.
                self._arm_head_timer()

    # ---- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        if self._head_timer is None:
            # A later request: its clock starts at its first byte, never earlier (the
            # previous request's work and the idle time between them have clocks of their own).
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._reading_head:
            super().on_header(name, value)
            return
        # A trailer field: counted against MAX_HEADER_BYTES, and dropped (the request's
        # headers went to the application already; nothing here reads trailers).
        self._trailer_bytes += len(name) + len(value) + 4
        if self._trailer_bytes > self.max_head_bytes:
            self._refusal = self._trailers_too_large()
            raise _Refused

    def on_chunk_header(self) -> None:
        self._chunk_waiting = True

    def on_body(self, body: bytes) -> None:
        self._chunk_waiting = False
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads += 1
        self._cancel_head_timer()
        line = len(self.parser.get_method()) + len(self.url) + _LINE_BYTES
        size = line + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_head_bytes:
            self._refusal = self._too_large(size)
            raise _Refused
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if (
            cycle is not previous
            and cycle is not None
            and self.scope["http_version"] == "1.0"
            and self.parser.should_keep_alive()  # llhttp: HTTP/1.0 with Connection: keep-alive
        ):
            cycle.keep_alive = True  # uvicorn closes every HTTP/1.0 connection
            cycle.default_headers = [*cycle.default_headers, KEEP_ALIVE_HEADER]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes, self._head_begun = True, 0, False
        self._chunk_waiting, self._trailer_bytes = False, 0

    def on_response_complete(self) -> None:
        if not self._reading_head and not self.pipeline and not self.transport.is_closing():
            # Answered before its body was all in (an early error, or a route that reads no
            # body): reading the rest would let a trickling client hold the connection.
            self.transport.close()
        super().on_response_complete()

    def shutdown(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # uvicorn answers "Connection: close" now: keep-alive is no longer promised.
            cycle.default_headers = list(self.server_state.default_headers)
        super().shutdown()

    # ---- refusals -----------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._refuse(BadRequest(msg))

    def _too_large(self, size: int) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"request line and headers of {size}+ bytes exceed "
            f"MAX_HEADER_BYTES={self.max_head_bytes}"
        )

    def _trailers_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"trailers of {self._trailer_bytes}+ bytes exceed "
            f"MAX_HEADER_BYTES={self.max_head_bytes}"
        )

    def _refuse(self, error: ApiError) -> None:
        """Answer `error` as JSON and close (nothing more is read)."""
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        log.info("%s %s: %s", self._peer(), error.status, error.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.response_started:
            # A malformed body: the handler waiting for it sees a disconnect, and its
            # answer, if any, goes nowhere; this one is the client's.
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is None or cycle.disconnected or cycle.response_complete:
            body = error_body(error.message)
            content = [STATUS_LINE[error.status]]
            for name, value in self.server_state.default_headers:
                content += [name, b": ", value, b"\r\n"]
            content += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
            self.transport.write(b"".join(content))
            self._linger()
        else:  # a response is being written: cutting the connection is all that is left
            self.transport.close()

    def _linger(self) -> None:
        """Half-close, then drop what the client still sends, for a moment, before closing."""
        self._discard = LINGER_BYTES
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    # ---- the header clock ---------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self._head_begun:
            self._refuse(
                RequestTimeout(
                    f"request line and headers not received within "
                    f"HEADER_TIMEOUT_S={self.head_timeout_s:g} s"
                )
            )
        else:  # never sent a byte: nobody to answer
            self.transport.close()


def protocol_class(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these settings' limits."""
    return type(
        "ServerHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_header_bytes,
            "head_timeout_s": settings.header_timeout_s,
            "keep_alive_timeout_s": settings.keep_alive_timeout_s,
        },
    )
