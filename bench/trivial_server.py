"""A do-nothing HTTP/1.1 responder: the load generator's ceiling is measured against it.

It answers every request on a kept-alive connection with the same tiny 200 response, so
whatever rate wrk reaches here is an upper bound on what wrk itself can drive.
Run: `python -m bench.trivial_server PORT`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
HEADER_END = b"\r\n\r\n"


class Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        # Requests here are bodiless GETs: one response per header block received.
        self.buffer += data
        count = self.buffer.count(HEADER_END)
        if count:
            self.buffer = self.buffer[self.buffer.rfind(HEADER_END) + len(HEADER_END) :]
            self.transport.write(RESPONSE * count)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop  # the fastest loop available: the ceiling should be wrk's, not ours

    uvloop.run(serve(int(sys.argv[1])))
