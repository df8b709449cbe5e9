"""The loaded models, looked up by name and optional version (404s name what was asked)."""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import not_found
from service.runtime import LoadedModel


class ModelRegistry:
    """Models by name, then version; the highest version is the default."""

    def __init__(self, models: Iterable[LoadedModel]) -> None:
        self._models: dict[str, dict[str, LoadedModel]] = {}
        for model in models:
            self._models.setdefault(model.name, {})[model.version] = model
        self._latest = {
            name: versions[max(versions, key=int)] for name, versions in self._models.items()
        }

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        versions = self._models.get(name)
        if versions is None:
            raise not_found(f"unknown model '{name}'")
        if version is None or version == "":
            return self._latest[name]
        model = versions.get(version)
        if model is None:
            raise not_found(
                f"unknown version '{version}' of model '{name}' "
                f"(available: {', '.join(self.versions(name))})"
            )
        return model

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=int)

    def all(self) -> list[LoadedModel]:
        return [model for versions in self._models.values() for model in versions.values()]
