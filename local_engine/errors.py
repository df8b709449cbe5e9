"""Errors the local engine reports the way the engine does, so the SDK raises the same types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class EngineError(Exception):
    """A failed field; `extensions` reach the SDK as the GraphQL error's extensions."""

    def __init__(self, message: str, extensions: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.extensions = extensions


def exec_error(command: Sequence[str], exit_code: int, stdout: str, stderr: str) -> EngineError:
    """A non-zero exit as the SDK's `dagger.ExecError` reads it (`_type` EXEC_ERROR).

    Fields as the engine's `ExecError.Extensions` (core/exec_error.go, v0.21.8): outputs
    trimmed of surrounding white space.
    """
    message = f"process {list(command)!r} did not complete successfully: exit code: {exit_code}"
    return EngineError(
        message,
        {
            "_type": "EXEC_ERROR",
            "cmd": list(command),
            "exitCode": exit_code,
            "stdout": stdout.strip(),
            "stderr": stderr.strip(),
        },
    )
