"""Secrets and cache volumes, and the rule for API arguments that are not modelled."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import EngineError

if TYPE_CHECKING:
    from .session import Session


def refuse_unmodelled(field: str, kwargs: Mapping[str, Any], ignored: set[str]) -> None:
    """Arguments left at their defaults are fine; any other use is refused, not guessed."""
    used = [k for k, v in kwargs.items() if k not in ignored and v not in (None, False, "", [])]
    if used:
        raise EngineError(f"local engine: {field}({', '.join(used)}:) is not modelled")


@dataclass(frozen=True, eq=False)
class Secret:
    """A secret's value lives in the session only (`Session.secrets`), keyed by its digest;
    it reaches a container as a file or variable at exec time and is in no image."""

    type_name: ClassVar[str] = "Secret"
    secret_name: str  # "" for secrets read by the CLI (env://, file://): the engine names none
    value_digest: str

    def definition(self) -> Any:
        return [self.secret_name, self.value_digest]

    def id(self, session: Session) -> str:
        return session.store.register(self)

    def name(self, session: Session) -> str:
        return self.secret_name

    def plaintext(self, session: Session) -> str:
        return value_of(session, self).decode()


def value_of(session: Session, secret: Secret) -> bytes:
    return session.secrets[secret.value_digest]


@dataclass(frozen=True, eq=False)
class CacheVolume:
    type_name: ClassVar[str] = "CacheVolume"
    key: str

    def definition(self) -> Any:
        return [self.key]

    def id(self, session: Session) -> str:
        return session.store.register(self)


def make_secret(session: Session, name: str, value: bytes) -> Secret:
    """A secret whose value stays in the session; `name` "" for the CLI's env:// and file://."""
    value_digest = hashlib.sha256(value).hexdigest()
    session.secrets[value_digest] = value
    return Secret(name, value_digest)
