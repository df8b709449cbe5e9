"""The onnx-serving Dagger module: build, test, lint, scan, sbom, publish, serve, benchmark.

The main object lives in `main.py` (the entry point in ci/pyproject.toml names it). It is
imported lazily so that the pure-Python helpers (commands, tags, validation, …) stay
importable without loading the Dagger SDK.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "OnnxServing":
        from .main import OnnxServing

        return OnnxServing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
