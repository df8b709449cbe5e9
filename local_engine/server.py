"""The engine's HTTP endpoint on 127.0.0.1: `POST /query` with the session token as the Basic
auth user name, as the SDK's client sends it (dagger/client/_session.py)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from aiohttp import web

from .api import execute
from .root import FunctionCall, Query
from .session import Session


class Server:
    """One port; each module process is told the token of the call it serves."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.calls: dict[str, FunctionCall | None] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    def token_for(self, call: FunctionCall | None) -> str:
        token = secrets.token_hex(16)
        self.calls[token] = call
        return token

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _query(self, request: web.Request) -> web.Response:
        token = _basic_user(request.headers.get("Authorization", ""))
        if token not in self.calls:
            return web.json_response({"errors": [{"message": "unauthorized"}]}, status=401)
        body: dict[str, Any] = await request.json()
        root = Query(self.calls[token])
        result = await execute(self.session, body["query"], body.get("variables"), root)
        return web.json_response(result)


def _basic_user(header: str) -> str:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(encoded).decode().split(":", 1)[0]
    except ValueError:
        return ""
