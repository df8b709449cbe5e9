"""Find the model files to serve: a repository folder, a single file, or the bundled default.

A repository is a folder of ``<name>/<version>/model.onnx`` (versions are positive integers).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from service.settings import Settings

BUNDLED_REPOSITORY = Path(__file__).resolve().parent.parent / "models"
MODEL_FILE = "model.onnx"


class ModelSourceError(RuntimeError):
    """A model file is missing, unreadable or not the expected one; the message names it."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    version: str
    path: Path
    sha256: str | None = None  # known once MODEL_SHA256 was checked: no second read at load


def discover_models(settings: Settings) -> list[ModelSource]:
    """List the model files the settings point at, and check MODEL_SHA256 if set."""
    if settings.model_path is not None:
        path = settings.model_path
        if not path.is_file():
            raise ModelSourceError(f"model file {path} (MODEL_PATH) does not exist")
        name = settings.model_name or _stem_name(path)
        sources = [ModelSource(name, str(settings.model_version), path)]
    else:
        sources = scan_repository(settings.model_repository or BUNDLED_REPOSITORY)
    if settings.model_sha256 is not None:
        if len(sources) != 1:
            raise ModelSourceError(
                f"MODEL_SHA256 needs exactly one model file, found {len(sources)}"
            )
        verify_sha256(sources[0].path, settings.model_sha256)
        sources = [replace(sources[0], sha256=settings.model_sha256)]
    return sources


def _stem_name(path: Path) -> str:
    # "model.onnx" says nothing; its folder ("mlp/1/model.onnx" -> "mlp") is a better name.
    if path.stem == "model" and path.parent.name.isdigit():
        return path.parent.parent.name or "model"
    return path.stem


# A version folder: a positive integer as written once ("1", "12"; not "01" or "٣").
_VERSION = re.compile(r"[1-9][0-9]*")


def scan_repository(root: Path) -> list[ModelSource]:
    """All ``<name>/<version>/model.onnx`` files under ``root``, sorted by name and version."""
    if not root.is_dir():
        raise ModelSourceError(f"model repository {root} is not a folder")
    sources = [
        ModelSource(model_dir.name, version_dir.name, version_dir / MODEL_FILE)
        for model_dir in root.iterdir()
        if model_dir.is_dir() and not model_dir.name.startswith(".")
        for version_dir in model_dir.iterdir()
        if _VERSION.fullmatch(version_dir.name) and (version_dir / MODEL_FILE).is_file()
    ]
    if not sources:
        raise ModelSourceError(
            f"model repository {root} holds no <name>/<version>/{MODEL_FILE} files"
        )
    return sorted(sources, key=lambda source: (source.name, int(source.version)))


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks so a large model is never held twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ModelSourceError(
            f"model file {path} has sha256 {actual}, but MODEL_SHA256 is {expected}"
        )
