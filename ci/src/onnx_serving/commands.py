"""Command lines shared by the Dagger plan and the Docker image tests.

The Dagger functions put these into `with_exec`; tests/ runs the very same lists for real
against Docker, so what the engine will execute has been executed on this machine too.
Pure Python, no dagger import: tests import it without an engine.
"""

from __future__ import annotations

SMOKE_CLIENT = "scripts/smoke_client.py"


def smoke_command(url: str, model: str = "mlp", python: str = "python") -> list[str]:
    """The tritonclient smoke test against a running server at `url` (host:port)."""
    return [python, SMOKE_CLIENT, "--url", url, "--model", model]
