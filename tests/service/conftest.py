"""Shared servers for the service tests: real `python -m service` processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.live_server import LiveServer, running_server
from tests.service.model_factory import make_repository

# Small enough that the oversize test stays cheap, big enough for every other request.
TEST_MAX_BODY_BYTES = 1 << 20
BATCH_ROWS = 8


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The main server: default settings (so dynamic batching is on) except a 1 MiB body
    limit."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    env = {"MODEL_REPOSITORY": str(model_repository), "MAX_BODY_BYTES": str(TEST_MAX_BODY_BYTES)}
    with running_server(env, log) as live:
        yield live


@pytest.fixture(scope="session")
def unbatched_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Dynamic batching off (MAX_BATCH_SIZE=0): every request is a session run of its own."""
    log = tmp_path_factory.mktemp("logs") / "unbatched.log"
    with running_server(
        {"MODEL_REPOSITORY": str(model_repository), "MAX_BATCH_SIZE": "0"}, log
    ) as live:
        yield live


@pytest.fixture(scope="session")
def batching_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Dynamic batching with a hard cap (MAX_BATCH_SIZE set). A batch runs only once it holds
    BATCH_ROWS rows (the 60 s delay is never reached), so tests that send rows in multiples of
    BATCH_ROWS merge for sure."""
    log = tmp_path_factory.mktemp("logs") / "batching.log"
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "MAX_BATCH_SIZE": str(BATCH_ROWS),
        "MAX_BATCH_DELAY_MS": "60000",
    }
    with running_server(env, log) as live:
        yield live


@pytest.fixture(scope="session")
def eager_batching_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Dynamic batching with the default delay (MAX_BATCH_DELAY_MS=0) and a small hard cap:
    requests merge when they queue up behind a busy worker, whatever their rows add up to."""
    log = tmp_path_factory.mktemp("logs") / "eager-batching.log"
    env = {"MODEL_REPOSITORY": str(model_repository), "MAX_BATCH_SIZE": str(BATCH_ROWS)}
    with running_server(env, log) as live:
        yield live
