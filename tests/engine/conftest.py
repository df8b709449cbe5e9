"""Fixtures of the local-engine tests."""

from tests.engine.private_registry import private_registry

__all__ = ["private_registry"]
