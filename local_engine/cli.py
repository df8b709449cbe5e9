"""`python -m local_engine [CONSTRUCTOR FLAGS] FUNCTION [FLAGS] [export --path P | up --ports H:C]`
— `dagger call` on this machine's Docker engine (scripts/pipeline.sh).

Flags are the CLI's: kebab-case argument names, `--flag value` or `--flag=value`, a bare
boolean flag for true, lists comma-separated, directories and files as host paths, a git
repository as its checkout's path, secrets as env://NAME or file://PATH, enums by name.
Results as `dagger call` gives them: strings printed; a Container loaded into the local
engine and its image id printed; a File or Directory written with `export --path P` (or
`--export P`); a Service served with `up --ports HOST:CONTAINER` on 127.0.0.1 until
interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import git
from .container import Container
from .errors import EngineError
from .filesystem import Directory
from .module import Argument, Function, ModuleConfig, call, enum_members, functions_of
from .root import FunctionCall, Record
from .server import Server
from .session import Session
from .values import make_secret

NOT_MODELLED = (
    "local engine: function results are not cached across runs (the engine caches them); "
    "every call here runs again, on Docker's build cache and the images it finalised before"
)


class UsageError(Exception):
    """A bad command line: one line naming the bad value."""


def context_root(module_root: Path) -> Path:
    """Where DefaultPath("/") points: the git checkout holding the module, else its folder."""
    done = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=module_root,
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(done.stdout.strip()) if done.returncode == 0 else module_root


def split_flags(
    words: list[str], booleans: frozenset[str] = frozenset()
) -> tuple[dict[str, str], list[str]]:
    """Leading `--flag[=value]` words, and the rest. A boolean flag alone means true; any
    other flag takes the next word as its value."""
    flags: dict[str, str] = {}
    rest = list(words)
    while rest and rest[0].startswith("--"):
        word = rest.pop(0)[2:]
        name, has_value, value = word.partition("=")
        if not has_value:
            if name in booleans or not rest:
                value = "true" if name in booleans else ""
            else:
                value = rest.pop(0)
        flags[name] = value
    return flags, rest


class Invocation:
    def __init__(self, session: Session, module: ModuleConfig, registered: Record) -> None:
        self.session, self.module, self.registered = session, module, registered
        self.functions = functions_of(registered, module.main_name)
        self.context = context_root(module.root)

    def booleans(self, function: str) -> frozenset[str]:
        arguments = self.functions[function].arguments if function in self.functions else ()
        return frozenset(a.flag for a in arguments if a.type_def.arg("kind") == "BOOLEAN_KIND")

    def inputs(self, function: Function, flags: dict[str, str]) -> dict[str, Any]:
        by_flag = {a.flag: a for a in function.arguments}
        unknown = [f for f in flags if f not in by_flag]
        if unknown:
            known = ", ".join(f"--{f}" for f in by_flag) or "none"
            raise UsageError(
                f"unknown flag --{unknown[0]} for {function.name or 'the module'} ({known})"
            )
        values: dict[str, Any] = {}
        for argument in function.arguments:
            if argument.flag in flags:
                values[argument.name] = self.value(
                    argument, argument.type_def, flags[argument.flag]
                )
            elif argument.default_path is not None:
                values[argument.name] = self.contextual(argument)
        return values

    def value(self, argument: Argument, type_def: Record, text: str) -> Any:
        kind = type_def.arg("kind")
        if type_def.all("with_list_of"):
            element = type_def.all("with_list_of")[-1]["element_type"]
            return [self.value(argument, element, item) for item in text.split(",") if item]
        if kind == "BOOLEAN_KIND":
            if text not in ("true", "false"):
                raise UsageError(f"--{argument.flag}: {text!r} is not true or false")
            return text == "true"
        if kind == "INTEGER_KIND":
            try:
                return int(text)
            except ValueError:
                raise UsageError(f"--{argument.flag}: {text!r} is not an integer") from None
        if type_def.all("with_enum"):
            members = enum_members(self.registered, type_def.all("with_enum")[-1]["name"])
            if text not in members:
                raise UsageError(f"--{argument.flag}: {text!r} is not one of {', '.join(members)}")
            return text
        objects = type_def.all("with_object")
        if objects:
            return self.object(argument, objects[-1]["name"], text)
        return text  # strings and scalars (Platform)

    def object(self, argument: Argument, type_name: str, text: str) -> str:
        session = self.session
        if type_name == "Directory":
            path = Path(text).resolve()
            if not path.is_dir():
                raise UsageError(f"--{argument.flag}: {text!r} is not a directory")
            return Directory("host", (str(path), argument.ignore)).id(session)
        if type_name == "File":
            path = Path(text).resolve()
            if not path.is_file():
                raise UsageError(f"--{argument.flag}: {text!r} is not a file")
            return Directory("host", (str(path.parent), ())).file(session, path.name).id(session)
        if type_name == "Secret":
            return make_secret(session, "", read_secret(argument.flag, text)).id(session)
        if type_name == "Container":
            return Container(_platform()).from_(session, text).id(session)
        if type_name == "GitRepository":
            path = Path(text).resolve()
            if not path.is_dir():
                raise UsageError(f"--{argument.flag}: {text!r} is not a directory")
            what = f"--{argument.flag} {text!r}"
            return git.checkout_repository(path, what).id(session)
        raise UsageError(f"--{argument.flag}: arguments of type {type_name} are not modelled")

    def contextual(self, argument: Argument) -> str:
        """A `DefaultPath` argument: the context's git repository, or a folder of the context
        loaded with its `Ignore` patterns."""
        assert argument.default_path is not None
        if argument.object_type == "GitRepository":
            return git.contextual_repository(self.context, argument.default_path).id(self.session)
        path = self.context / argument.default_path.lstrip("/")
        if not path.is_dir():
            raise EngineError(
                f"local engine: default path {argument.default_path!r} of "
                f"--{argument.flag} is not a directory in {self.context}"
            )
        return Directory("host", (str(path), argument.ignore)).id(self.session)


def read_secret(flag: str, text: str) -> bytes:
    scheme, _, rest = text.partition(":")
    rest = rest.removeprefix("//")
    if scheme == "env":
        if rest not in os.environ:
            raise UsageError(f"--{flag}: the variable {rest} is not set")
        return os.environ[rest].encode()
    if scheme == "file":
        try:
            return Path(rest).read_bytes()
        except OSError as error:
            raise UsageError(f"--{flag}: cannot read {rest}: {error.strerror}") from None
    raise UsageError(f"--{flag}: a secret is env://NAME or file://PATH, not {text!r}")


def _platform() -> str:
    from .docker import host_platform

    return host_platform()


async def run(module_root: Path, words: list[str]) -> int:
    session = Session.create(
        caches_dir=Path(
            os.environ.get(
                "LOCAL_ENGINE_CACHE_DIR", Path.home() / ".cache/onnx-serving-local-engine"
            )
        )
    )
    server = Server(session)
    await server.start()
    try:
        module = ModuleConfig.load(module_root)
        registered = session.store.load(await call(server, module, None))
        invocation = Invocation(session, module, registered)
        ctor_flags, rest = split_flags(words, invocation.booleans(""))
        if not rest:
            print("functions: " + " ".join(sorted(f for f in invocation.functions if f)))
            return 0
        name, rest = rest[0], rest[1:]
        function = invocation.functions.get(_api_name(name))
        if function is None:
            raise UsageError(f"unknown function {name!r}")
        flags, chained = split_flags(rest, invocation.booleans(function.name))
        export = flags.pop("export", None) or flags.pop("output", None)
        ctor_inputs = invocation.inputs(invocation.functions[""], ctor_flags)
        inputs = invocation.inputs(function, flags)
        print(NOT_MODELLED, file=sys.stderr)
        state = await call(server, module, FunctionCall(module.main_name, "", {}, ctor_inputs))
        result = await call(
            server, module, FunctionCall(module.main_name, function.name, state, inputs)
        )
        await present(session, function, result, chained, export)
        return 0
    finally:
        await server.stop()
        await session.close()


def _api_name(kebab: str) -> str:
    """The SDK registers Python names (`scan_published`); the CLI spells them kebab-case."""
    return kebab.replace("-", "_")


async def present(
    session: Session, function: Function, result: Any, chained: list[str], export: str | None
) -> None:
    """Print or export a result as `dagger call` does."""
    objects = function.return_type.all("with_object")
    type_name = objects[-1]["name"] if objects else ""
    if not type_name:
        if result is not None:
            print(result if isinstance(result, str) else json.dumps(result))
        return
    obj = session.store.load(result)
    verb, flags = (chained[0], split_flags(chained[1:])[0]) if chained else ("", {})
    if type_name in ("File", "Directory"):
        path = export or flags.get("path")
        if path is None:
            raise UsageError(f"{function.name} returns a {type_name}: add `export --path PATH`")
        print(await obj.export(session, path))
    elif type_name == "Container":
        from .evaluate import state
        from .rootfs import finalise

        image = await finalise(session, await state(session, obj))
        session.results.add(image)
        print(image)
    elif type_name == "Service":
        if verb != "up":
            raise UsageError(f"{function.name} returns a Service: add `up --ports HOST:CONTAINER`")
        ports = [p.split(":") for p in flags.get("ports", "").split(",") if p]
        forwards = [{"frontend": int(h), "backend": int(c)} for h, c in ports]
        await obj.up(session, ports=forwards)
    else:
        raise UsageError(f"results of type {type_name} are not modelled")


def main(argv: list[str]) -> int:
    module_root = Path(os.environ.get("LOCAL_ENGINE_MODULE", Path.cwd()))
    try:
        return asyncio.run(run(module_root, argv))
    except UsageError as error:
        print(f"local engine: {error}", file=sys.stderr)
        return 2
    except EngineError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
