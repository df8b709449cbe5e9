"""Object IDs: every object the API hands out is registered under an ID derived from its
definition, so the same definition always has the same ID (the engine's IDs are content
digests of the call chain too) and an ID can be sent back as an argument."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

PREFIX = "local-engine:"


class EngineObject(Protocol):
    @property
    def type_name(self) -> str: ...

    def definition(self) -> Any:
        """What makes this object what it is (JSON-able; other objects by their digest)."""
        ...


def digest(obj: EngineObject) -> str:
    text = json.dumps([obj.type_name, obj.definition()], sort_keys=True, default=_encode)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(value: Any) -> Any:
    if hasattr(value, "definition"):
        return digest(value)
    if isinstance(value, tuple | frozenset):
        return list(value)
    raise TypeError(f"cannot digest {type(value).__name__}")


class Store:
    """The session's objects by ID."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}

    def register(self, obj: EngineObject) -> str:
        object_id = f"{PREFIX}{obj.type_name}:{digest(obj)}"
        self._objects.setdefault(object_id, obj)
        return object_id

    def load(self, object_id: str) -> Any:
        try:
            return self._objects[object_id]
        except KeyError:
            raise KeyError(f"local engine: unknown object ID {object_id[:60]!r}") from None

    def resolve(self, value: Any) -> Any:
        """An argument with every ID in it replaced by its object."""
        if isinstance(value, str) and value.startswith(PREFIX):
            return self.load(value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value
