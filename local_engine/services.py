"""Services: a container run in the background for the execs bound to it, or for `up`.

Readiness as the engine decides it (core/service.go `startContainer`, v0.21.8): an image with
a Docker HEALTHCHECK is ready when the check passes; otherwise when every exposed port
accepts a connection. A service that exits first is an error carrying its logs. A bound
service starts when an exec needs it and stops when no exec needs it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import EngineError
from .execution import HELPER_DIR, Workspace, process_flags, wrapped
from .values import refuse_unmodelled

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
        refuse_unmodelled("Service.up", kw, set())
        forwards = [(p["frontend"] or p["backend"], p["backend"]) for p in ports or []]
        name = await start(session, self, "", forwards)
        stop = session.stops.pop(name)
        try:
            while (
                await session.docker.run(["inspect", "-f", "{{.State.Running}}", name])
            ).text == "true":
                await asyncio.sleep(1)
            raise EngineError(f"local engine: service exited: {await _logs(session, name)}")
        finally:
            await stop()


def service_command(st: Any, args: tuple[str, ...], use_entrypoint: bool) -> tuple[str, ...]:
    """The engine's rule (core/container.go `AsService`): an image entrypoint is used unless
    default args were set or args are given without use_entrypoint."""
    if not args and not st.default_args and not st.entrypoint:
        raise EngineError("local engine: no service command: give args, a default or an entrypoint")
    with_entrypoint = use_entrypoint or (bool(st.entrypoint) and not st.default_args_set)
    command = st.default_args
    if args:
        command, with_entrypoint = args, use_entrypoint
    return (*st.entrypoint, *command) if with_entrypoint else tuple(command)


async def start(
    session: Session, service: Service, alias: str, forwards: list[tuple[int, int]] | None = None
) -> str:
    """Start the service's container; returns its name once ready."""
    from .evaluate import state

    st = await state(session, service.container)
    if st.image is None:
        raise EngineError("local engine: a service needs a container with a rootfs")
    argv = service_command(st, service.args, service.use_entrypoint)
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
        tcp = [port for port, protocol in st.ports if protocol == "TCP"]  # UDP: not probed
        await _wait_ready(session, name, bool(st.healthcheck), tcp)
    except BaseException:
        await session.docker.remove_container(name)
        workspace.release()
        raise

    async def stop() -> None:
        await session.docker.remove_container(name)
        workspace.release()

    session.cleanups.append(stop)
    session.stops[name] = stop
    return name


async def _wait_ready(session: Session, name: str, healthcheck: bool, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    inspect = [
        "inspect",
        "-f",
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
    ]
    while loop.time() < deadline:
        status = (await session.docker.run([*inspect, name])).text.split()
        if status[0] != "running":
            logs = await _logs(session, name)
            raise EngineError(f"local engine: service exited before healthcheck: {logs}")
        if healthcheck and status[1:] == ["unhealthy"]:
            raise EngineError(
                f"local engine: service health check failed: {await _logs(session, name)}"
            )
        if healthcheck and status[1:] == ["healthy"]:
            return
        if not healthcheck and await _listening(session, name, ports):
            return
        await asyncio.sleep(0.5)
    raise EngineError(f"local engine: service not ready after {READY_TIMEOUT_S:.0f} s")


async def _listening(session: Session, name: str, ports: list[int]) -> bool:
    """Every exposed TCP port listens inside the service's own namespace (a published port
    accepts at Docker's proxy before the service listens, so it proves nothing)."""
    done = await session.docker.run(
        ["exec", name, f"{HELPER_DIR}/busybox", "netstat", "-ltn"], check=False
    )
    listening = {line.split()[3].rsplit(":", 1)[1] for line in done.text.splitlines()[2:]}
    return all(str(port) in listening for port in ports)


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
        await session.stops.pop(name)()
