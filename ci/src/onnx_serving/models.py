"""What `--models DIR` may be: a model repository, or a folder holding one .onnx file.

A repository is `<name>/<version>/model.onnx` (what the server reads at /models); a single
file `x.onnx` is served as model `x`, version 1 (`x/1/model.onnx`). The Dagger module and
scripts/ both decide here, from a listing of the folder, before anything is built. Pure
Python, no dagger import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MODEL_FILE = "model.onnx"
_REPOSITORY_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)/(?P<version>[1-9][0-9]*)/model\.onnx")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ModelLayout:
    """How a models folder becomes the image's /models."""

    names: tuple[str, ...]  # the models it serves
    single_file: str | None  # a lone `x.onnx` to place at `x/1/model.onnx`, or None

    @property
    def repository_path(self) -> str | None:
        """Where the single file goes in the repository (None for a repository)."""
        return f"{self.names[0]}/1/{MODEL_FILE}" if self.single_file else None


def model_layout(folder: str, files: Iterable[str]) -> ModelLayout:
    """Decide from the folder's file paths (relative, '/'-separated) or say what is wrong."""
    paths = sorted(p.strip("/") for p in files)
    root_models = [p for p in paths if "/" not in p and p.endswith(".onnx")]
    repository = [m for p in paths if (m := _REPOSITORY_ENTRY.fullmatch(p))]
    if root_models and not repository:
        if len(root_models) > 1:
            raise ValueError(
                f"models folder {folder!r} holds several .onnx files ({', '.join(root_models)}): "
                "give one file, or a repository of <name>/<version>/model.onnx"
            )
        name = root_models[0].removesuffix(".onnx")
        if not _MODEL_NAME.fullmatch(name):
            raise ValueError(
                f"model file {root_models[0]!r} in {folder!r}: name it with letters, digits, "
                "'_', '.' and '-' only (the file name is the model name)"
            )
        return ModelLayout((name,), root_models[0])
    if not repository:
        raise ValueError(
            f"models folder {folder!r} has no <name>/<version>/model.onnx and no single .onnx "
            f"file (found: {', '.join(paths[:5]) or 'nothing'})"
        )
    return ModelLayout(tuple(sorted({m["name"] for m in repository})), None)
