"""The Docker engine underneath: every call is one `docker` command line, run without a shell."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onnx_serving.docker_cli import docker_binary, docker_env

from .errors import EngineError


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace").strip()


class Docker:
    """Async `docker` commands (BuildKit on) against the machine's engine."""

    def __init__(self, config_dir: str | None = None) -> None:
        binary = docker_binary()
        if binary is None:
            raise EngineError("local engine: no docker client found (install docker.io)")
        self.binary = binary
        self.env = docker_env()
        self.committed: list[str] = []  # images made by this session, removed at its end
        if config_dir is not None:  # registry logins of this session only
            self.env["DOCKER_CONFIG"] = config_dir

    async def run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> Completed:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
        )
        out, err = await process.communicate(stdin)
        done = Completed(process.returncode or 0, out, err)
        if check and done.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()[-20:]
            raise EngineError(f"local engine: docker {args[0]} failed: " + "\n".join(detail))
        return done

    async def inspect_image(self, image: str) -> dict[str, Any] | None:
        done = await self.run(["image", "inspect", image], check=False)
        if done.returncode != 0:
            return None
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found[0]

    async def commit(self, name: str, *changes: str) -> str:
        """A new image from a stopped container; `changes` are Dockerfile lines."""
        flags = [arg for change in changes for arg in ("--change", change)]
        image = (await self.run(["commit", *flags, name])).text
        self.committed.append(image)
        return image

    async def remove_container(self, name: str) -> None:
        await self.run(["rm", "--force", "--volumes", name], check=False)


def host_platform() -> str:
    """The engine's own platform, as `dag.default_platform()` reports it."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"
