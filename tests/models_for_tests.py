"""The models the tests serve: written by the tests themselves, never read from models/.

What the repository bundles in models/ belongs to its owners: a team swaps it for its own
model, and the suite must stay green. So every test that needs a known model (its name, its
inputs, its answers) gets one from here: the default MLP of scripts/make_default_model.py,
written byte for byte (deterministic) into a temporary folder of this test process.

    mlp_model()       # <tmp>/mlp/1/model.onnx: input FP32 [N, 256] -> logits, label
    mlp_repository()  # <tmp>: a repository serving that model as `mlp`, version 1

Tests about what models/ holds (the image bakes it, the checks smoke-test it) read it through
its layout and metadata only: repository_models(REPO / "models").
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
MODEL_FILE = "model.onnx"


def _load_make_default_model() -> ModuleType:
    path = REPO / "scripts" / "make_default_model.py"
    spec = importlib.util.spec_from_file_location("make_default_model", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_default_model = _load_make_default_model()

MLP = "mlp"  # the name the tests serve the default MLP under
MLP_INPUT = "input"
MLP_WIDTH: int = make_default_model.INPUT_WIDTH  # input FP32 [N, MLP_WIDTH]
MLP_CLASSES: int = make_default_model.CLASSES  # logits FP32 [N, MLP_CLASSES], label INT64 [N]
MLP_PRODUCER: str = make_default_model.PRODUCER  # producer_name of its graph


@functools.cache
def mlp_bytes() -> bytes:
    """The default MLP, serialized (the same bytes on every call and every machine)."""
    data: bytes = make_default_model.model_bytes()
    return data


def write_mlp(path: Path) -> Path:
    """The default MLP at `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mlp_bytes())
    return path


@functools.cache
def _root() -> Path:
    """This process's folder of test models, removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="onnx-serving-test-models-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def mlp_repository() -> Path:
    """A model repository of the default MLP alone: `mlp/1/model.onnx`. Shared: read only."""
    repository = _root() / "mlp-repository"
    write_mlp(repository / MLP / "1" / MODEL_FILE)
    return repository


def mlp_model() -> Path:
    """The default MLP's file (inside mlp_repository()). Shared: read only."""
    return mlp_repository() / MLP / "1" / MODEL_FILE


def repository_models(root: Path) -> dict[str, list[str]]:
    """What a model repository serves, from its layout alone: {name: [versions]}, versions
    in numeric order (`<name>/<version>/model.onnx`, the layout the server reads)."""
    served: dict[str, list[str]] = {}
    for model in sorted(root.glob(f"*/*/{MODEL_FILE}")):
        version, name = model.parent.name, model.parent.parent.name
        if version.isdigit() and int(version) > 0 and not name.startswith("."):
            served.setdefault(name, []).append(version)
    return {name: sorted(versions, key=int) for name, versions in served.items()}
