"""The served models, looked up by name and optional version (404s name what was asked,
cut to errors.SHOWN_CHARS characters).

A ServedModel is everything a request needs: the loaded session, the runner that executes
it, and the batching decision its /config reports. One lookup per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.batching import Runner, batch_limit, make_runner
from service.errors import NotFound, clip
from service.metrics import ServerMetrics
from service.runtime import InferenceExecutor, LoadedModel
from service.settings import Settings


@dataclass(frozen=True)
class ServedModel:
    """One model version as the server serves it."""

    model: LoadedModel
    runner: Runner
    max_batch_size: int  # rows per merged run; 0: each request runs alone
    max_batch_delay_ms: float

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version


def make_served_model(
    model: LoadedModel, settings: Settings, executor: InferenceExecutor, metrics: ServerMetrics
) -> ServedModel:
    """Decide how `model` is run under `settings` (the one place batching is decided)."""
    rows = batch_limit(model, settings.max_batch_size)
    runner = make_runner(
        model,
        executor,
        metrics,
        rows,
        settings.max_batch_delay_ms,
        settings.inference_workers,
    )
    return ServedModel(model, runner, rows, settings.max_batch_delay_ms)


class ModelRegistry:
    """Served models by name, then version; the highest version is the default."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self._models: dict[str, dict[str, ServedModel]] = {}
        for served in models:
            self._models.setdefault(served.name, {})[served.version] = served
        self._latest = {
            name: versions[max(versions, key=int)] for name, versions in self._models.items()
        }

    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._models.get(name)
        if versions is None:
            raise NotFound(f"unknown model '{clip(name)}'")
        if version is None or version == "":
            return self._latest[name]
        served = versions.get(version)
        if served is None:
            raise NotFound(
                f"unknown version '{clip(version)}' of model '{name}' "
                f"(available: {', '.join(self.versions(name))})"
            )
        return served

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=int)

    def all(self) -> list[ServedModel]:
        return [served for versions in self._models.values() for served in versions.values()]
