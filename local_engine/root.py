"""The Query root, the call being served, and the type definitions a module registers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from .container import Container
from .docker import host_platform
from .errors import EngineError
from .filesystem import Directory
from .session import Session
from .values import CacheVolume, make_secret, refuse_unmodelled


@dataclass(frozen=True, eq=False)
class Record:
    """A builder the engine only stores (Module, TypeDef, Function, FunctionArg, Error, …):
    each call appends to it; the CLI reads the chain back (cli.py)."""

    type_name: str
    calls: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def definition(self) -> Any:
        return [[name, [[k, v] for k, v in args]] for name, args in self.calls]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("with_") or name == "with_check" or name == "with_up":
            return lambda session, **kw: self._then(name, kw)
        raise AttributeError(name)

    def _then(self, name: str, args: dict[str, Any]) -> Record:
        kept = tuple(sorted((k, v) for k, v in args.items() if v is not None))
        return Record(self.type_name, (*self.calls, (name, kept)))

    def id(self, session: Session) -> str:
        return session.store.register(self)

    def arg(self, name: str) -> Any:
        """The last value given to `name` by any call (e.g. the object name)."""
        for _, args in reversed(self.calls):
            for key, value in args:
                if key == name:
                    return value
        return None

    def all(self, call: str) -> list[dict[str, Any]]:
        return [dict(args) for name, args in self.calls if name == call]


@dataclass(frozen=True, eq=False)
class ArgValue:
    """One input of the call (FunctionCallArgValue); the SDK loads each by its ID."""

    type_name: ClassVar[str] = "FunctionCallArgValue"
    arg_name: str
    json_value: str

    def definition(self) -> Any:
        return [self.arg_name, self.json_value]

    def id(self, session: Session) -> str:
        return session.store.register(self)

    def name(self, session: Session) -> str:
        return self.arg_name

    def value(self, session: Session) -> str:
        return self.json_value


class FunctionCall:
    """The call a module process serves: who is called, with what, and what it returned."""

    type_name: ClassVar[str] = "FunctionCall"

    def __init__(
        self, parent_name: str, name: str, parent: dict[str, Any], inputs: dict[str, Any]
    ) -> None:
        self.of_object, self.function, self.state, self.inputs = parent_name, name, parent, inputs
        self.returned: Any = None
        self.error: Record | None = None

    def parent_name(self, session: Session) -> str:
        return self.of_object

    def name(self, session: Session) -> str:
        return self.function

    def parent(self, session: Session) -> str:
        return json.dumps(self.state)

    def input_args(self, session: Session) -> list[ArgValue]:
        return [ArgValue(k, json.dumps(v)) for k, v in self.inputs.items()]

    def return_value(self, session: Session, value: str) -> None:
        self.returned = json.loads(value)

    def return_error(self, session: Session, error: Record) -> None:
        self.error = error


class Query:
    type_name = "Query"

    def __init__(self, call: FunctionCall | None) -> None:
        self.call = call

    def container(self, session: Session, platform: str | None = None) -> Container:
        return Container(platform or host_platform())

    def directory(self, session: Session) -> Directory:
        return Directory("empty")

    def set_secret(self, session: Session, name: str, plaintext: str, **_: Any) -> Any:
        return make_secret(session, name, plaintext.encode())

    def cache_volume(self, session: Session, key: str, **kw: Any) -> CacheVolume:
        # The volume's own sharing and owner (left at their defaults by the module) are not
        # modelled: withMountedCache's are.
        if kw.get("sharing") == "SHARED":
            del kw["sharing"]
        refuse_unmodelled("cacheVolume", kw, set())
        return CacheVolume(key)

    def default_platform(self, session: Session) -> str:
        return host_platform()

    def current_function_call(self, session: Session) -> Any:
        if self.call is None:
            raise EngineError("local engine: no function call is being served")
        return self.call

    def type_def(self, session: Session) -> Record:
        return Record("TypeDef")

    def module(self, session: Session) -> Record:
        return Record("Module")

    def function(self, session: Session, name: str, return_type: Record) -> Record:
        return Record("Function", (("new", (("name", name), ("return_type", return_type))),))

    def error(self, session: Session, message: str) -> Record:
        return Record("Error", (("new", (("message", message),)),))

    def node(self, session: Session, id: str) -> Any:
        return session.store.resolve(id)
