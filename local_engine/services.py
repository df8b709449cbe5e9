"""Services: a container run in the background for the execs bound to it, or for `up`.

Readiness as the engine decides it (core/service.go `startContainer`, v0.21.8): an image with
a Docker HEALTHCHECK is ready when the check passes; otherwise when every exposed port
accepts a connection. A service that exits first is an error carrying its logs. A bound
service starts when an exec needs it and stops when no exec needs it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import EngineError
from .execution import Workspace, process_flags, wrapped

if TYPE_CHECKING:
    from .container import Container
    from .session import Session

READY_TIMEOUT_S = 600.0  # emulated platforms start slowly


@dataclass(frozen=True, eq=False)
class Service:
    type_name: ClassVar[str] = "Service"
    container: Container
    args: tuple[str, ...]
    use_entrypoint: bool

    def definition(self) -> Any:
        return [self.container, list(self.args), self.use_entrypoint]

    def id(self, session: Session) -> str:
        return session.store.register(self)

    async def up(
        self, session: Session, ports: list[dict[str, Any]] | None = None, **kw: Any
    ) -> None:
        """Serve on 127.0.0.1 until the CLI is interrupted."""
        forwards = [(p["frontend"] or p["backend"], p["backend"]) for p in ports or []]
        name = await start(session, self, "", forwards)
        try:
            while (
                await session.docker.run(["inspect", "-f", "{{.State.Running}}", name])
            ).text == "true":
                await asyncio.sleep(1)
            raise EngineError(f"local engine: service exited: {await _logs(session, name)}")
        finally:
            await session.docker.remove_container(name)


async def start(
    session: Session, service: Service, alias: str, forwards: list[tuple[int, int]] | None = None
) -> str:
    """Start the service's container; returns its name once ready."""
    from .evaluate import state

    st = await state(session, service.container)
    if st.image is None:
        raise EngineError("local engine: a service needs a container with a rootfs")
    argv = service.args or st.default_args
    if service.use_entrypoint:
        argv = (*st.entrypoint, *argv)
    workspace = Workspace(session)
    name = f"local-engine-service-{uuid.uuid4().hex[:12]}"
    try:
        await workspace.mount_all(st.mounts)
        workspace.write_env(
            dict(st.env) | {k: session.secrets[s.value_digest].decode() for k, s in st.secret_env}
        )
        network = ["--add-host", f"{alias}:127.0.0.1"] if alias else []
        published = [f"127.0.0.1:{host}:{port}" for host, port in forwards or []]
        published += [f"127.0.0.1::{port}" for port, protocol in st.ports if protocol == "TCP"]
        flags = [arg for p in published for arg in ("--publish", p)]
        entry, rest = wrapped(tuple(argv))[:2], wrapped(tuple(argv))[2:]
        await session.docker.run(
            [
                "run",
                "--detach",
                "--name",
                name,
                *network,
                *flags,
                *process_flags(st, False, False),
                *workspace.flags,
                *entry,
                st.image,
                *rest,
            ]
        )
        await _wait_ready(session, name, bool(st.healthcheck), [p for p, _ in st.ports])
    except BaseException:
        await session.docker.remove_container(name)
        workspace.release()
        raise
    session.cleanups.append(lambda: session.docker.remove_container(name))
    return name


async def _wait_ready(session: Session, name: str, healthcheck: bool, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while loop.time() < deadline:
        status = (
            await session.docker.run(
                [
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    name,
                ]
            )
        ).text.split()
        if status[0] != "running":
            raise EngineError(
                f"local engine: service exited before healthcheck: {await _logs(session, name)}"
            )
        if healthcheck and status[1:] == ["healthy"]:
            return
        if not healthcheck and await _ports_open(session, name, ports):
            return
        await asyncio.sleep(0.5)
    raise EngineError(f"local engine: service not ready after {READY_TIMEOUT_S:.0f} s")


async def _ports_open(session: Session, name: str, ports: list[int]) -> bool:
    for port in ports:
        mapped = (await session.docker.run(["port", name, f"{port}/tcp"], check=False)).text
        if not mapped:
            return False
        host_port = int(mapped.splitlines()[0].rsplit(":", 1)[1])
        try:
            with socket.create_connection(("127.0.0.1", host_port), timeout=1):
                pass
        except OSError:
            return False
    return True


async def _logs(session: Session, name: str) -> str:
    done = await session.docker.run(["logs", "--tail", "30", name], check=False)
    return (done.stdout + done.stderr).decode(errors="replace").strip()


@contextlib.asynccontextmanager
async def bound_network(
    session: Session, services: tuple[tuple[str, Any], ...]
) -> AsyncIterator[list[str]]:
    """Docker flags that put an exec in its bound service's network namespace."""
    if not services:
        yield []
        return
    if len(services) > 1:
        raise EngineError("local engine: more than one service binding per exec is not modelled")
    alias, service = services[0]
    name = await start(session, service, alias)
    try:
        yield ["--network", f"container:{name}"]
    finally:
        await session.docker.remove_container(name)
