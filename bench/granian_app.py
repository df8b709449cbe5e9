"""Our application under granian's Rust HTTP server instead of uvicorn: a bench contender.

    granian --interface asgi --factory bench.granian_app:app

The same settings, models and ASGI application as ``python -m service``; only the HTTP layer
(parsing, keep-alive, writing) differs, so the two rows of the bench compare HTTP stacks.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from service.app import create_app
from service.logging_setup import configure_logging
from service.server import build_state
from service.settings import load_settings


def app() -> FastAPI:
    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    return create_app(build_state(settings))
