"""The module's own code, run as the engine runs it: a process per call through the SDK's
entry point (`dagger.mod.cli:app`), connected back to this engine, told which call it serves.

Registration is a call with no parent (the SDK answers with its Module's ID); the constructor
is a call of the main object named "" (it answers with the object's state); a function is a
call on that state (core/modfunc.go, v0.21.8). The module runs in this checkout's virtualenv
(the pinned dagger-io), not in the engine's runtime container with ci/uv.lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineError
from .root import FunctionCall, Record
from .server import Server

ENTRY_POINT = "from dagger.mod.cli import app; raise SystemExit(app())"


@dataclass(frozen=True)
class ModuleConfig:
    name: str  # dagger.json "name"
    root: Path  # the folder with dagger.json
    source: Path  # its "source" folder (the Python project)
    main_object: str  # "package.module:Class" from the project's dagger.mod entry point

    @classmethod
    def load(cls, root: Path) -> ModuleConfig:
        config = json.loads((root / "dagger.json").read_text())
        source = root / config.get("source", ".")
        project = tomllib.loads((source / "pyproject.toml").read_text())
        entry = project["project"]["entry-points"]["dagger.mod"]["main_object"]
        return cls(config["name"], root, source, entry)

    @property
    def main_name(self) -> str:
        return self.main_object.split(":")[1]

    def environment(self, port: int, token: str) -> dict[str, str]:
        package = self.main_object.split(":")[0]
        python_path = [str(self.source / "src"), os.environ.get("PYTHONPATH", "")]
        return {
            **os.environ,
            "DAGGER_SESSION_PORT": str(port),
            "DAGGER_SESSION_TOKEN": token,
            "DAGGER_MODULE": self.name,
            "DAGGER_MAIN_OBJECT": self.main_name,
            "DAGGER_DEFAULT_PYTHON_PACKAGE": package,
            "PYTHONPATH": os.pathsep.join(p for p in python_path if p),
        }


async def call(server: Server, module: ModuleConfig, function_call: FunctionCall | None) -> Any:
    """Run one call in a fresh module process; its value, or its error as EngineError."""
    current = function_call or FunctionCall("", "", {}, {})
    token = server.token_for(current)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ENTRY_POINT,
        env=module.environment(server.port, token),
        cwd=module.source,
        stdout=sys.stderr.fileno(),  # the module's own output is log, as `dagger call` shows it
    )
    code = await process.wait()
    if current.error is not None:
        message = current.error.arg("message") or "error"
        raise EngineError(_without_ansi(str(message)))
    if code != 0:
        raise EngineError(f"local engine: the module process exited {code}")
    return current.returned


def _without_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@dataclass(frozen=True)
class Argument:
    name: str  # the API name (camelCase)
    type_def: Record
    default_path: str | None
    ignore: tuple[str, ...]

    @property
    def object_type(self) -> str:
        """The argument's object type ("Directory", "GitRepository"); "" for other kinds."""
        objects = self.type_def.all("with_object")
        return str(objects[-1]["name"]) if objects else ""

    @property
    def flag(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "-", self.name).lower().replace("_", "-")


@dataclass(frozen=True)
class Function:
    name: str
    arguments: tuple[Argument, ...]
    return_type: Record


def functions_of(module_record: Record, object_name: str) -> dict[str, Function]:
    """The functions ("" for the constructor) of one object of a registered module."""
    for type_def in (args["object"] for args in module_record.all("with_object")):
        if type_def.arg("name") != object_name:
            continue
        found = {}
        defs = [f["function"] for f in type_def.all("with_function")]
        defs += [f["function"] for f in type_def.all("with_constructor")]
        for function in defs:
            new = function.all("new")[0]
            arguments = tuple(
                Argument(
                    a["name"],
                    a["type_def"],
                    a.get("default_path"),
                    tuple(a.get("ignore") or ()),
                )
                for a in function.all("with_arg")
            )
            found[new["name"]] = Function(new["name"], arguments, new["return_type"])
        return found
    raise EngineError(f"local engine: the module has no object {object_name}")


def enum_members(module_record: Record, enum_name: str) -> list[str]:
    for enum_def in (args["enum"] for args in module_record.all("with_enum")):
        if any(e.get("name") == enum_name for e in enum_def.all("with_enum")):
            return [m["name"] for m in enum_def.all("with_enum_member")]
    return []
