"""Fixtures for the pipeline plan tests: the module object on this repo, and a fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dagger import dag

from onnx_serving.main import OnnxServing

from .plan import REPO, FakeEngine, fake_engine


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    """Awaited Dagger values are answered by a recording stand-in, not an engine."""
    with fake_engine() as recording:
        yield recording


def make_module(**options: Any) -> Any:
    """The module's main object on this checkout, as `dagger call` would construct it.

    Typed Any on purpose: with dagger-io 0.21.11 mypy sees every `@function` method as
    `def (*Any, **Any) -> R?` and misses the constructor `@object_type` generates, so a
    precise type here would only produce false errors.
    """
    constructor: Any = OnnxServing
    return constructor(source=dag.host().directory(str(REPO)), **options)


@pytest.fixture
def module() -> Any:
    return make_module()
