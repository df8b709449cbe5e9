"""Our application under granian's Rust HTTP server instead of uvicorn: a bench contender.

    granian --interface asgi --factory bench.granian_app:app

The same settings, models and ASGI application as ``python -m service``; only the HTTP layer
(parsing, keep-alive, writing) differs, so the two rows of the bench compare HTTP stacks.
"""

from __future__ import annotations

from fastapi import FastAPI

from service.app import create_app
from service.logging_setup import settings_with_logging
from service.server import build_state


def app() -> FastAPI:
    settings = settings_with_logging()
    if settings is None:
        raise SystemExit(2)
    return create_app(build_state(settings))
