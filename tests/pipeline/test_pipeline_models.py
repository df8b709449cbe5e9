"""`--models`: a model repository or one .onnx file replaces the bundled models/ in the build
context of every function that builds an image, and a folder that is neither is a one-line
error before anything runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dagger import dag

from onnx_serving.models import model_layout

from .plan import Call, FakeEngine, calls, fake_engine, find, names, only

CLEAN = '{"SchemaVersion": 2, "Results": []}'


def _answers() -> dict[str, Any]:
    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return CLEAN
        return str(FakeEngine().answer(chain))

    return {"contents": contents}


def repository(tmp_path: Path) -> Path:
    (tmp_path / "iris/1").mkdir(parents=True)
    (tmp_path / "iris/1/model.onnx").write_bytes(b"onnx")
    return tmp_path


def _context_of(build: list[Call]) -> list[Call]:
    """The calls that made the build context (the chain up to dockerBuild)."""
    return build[: names(build).index("dockerBuild")]


def _assert_models_replaced(chain: list[Call], models: Path) -> None:
    context = _context_of(chain)
    assert names(context)[-2:] == ["withoutDirectory", "withDirectory"]
    assert context[-2].args == {"path": "models"}
    assert context[-1].args["path"] == "models"
    source = calls(context[-1].args["source"])
    assert source[:2] == [
        Call("Query", "host", {}),
        Call("Host", "directory", {"path": str(models)}),
    ]


def test_build_bakes_a_repository(module: Any, tmp_path: Path) -> None:
    models = repository(tmp_path)
    with fake_engine():
        image = asyncio.run(module.build(models=dag.host().directory(str(models))))
    _assert_models_replaced(calls(image), models)


def test_a_single_file_becomes_version_1_of_a_model_named_after_it(
    module: Any, tmp_path: Path
) -> None:
    (tmp_path / "fraud-detector.onnx").write_bytes(b"onnx")
    with fake_engine():
        image = asyncio.run(module.build(models=dag.host().directory(str(tmp_path))))
    placed = calls(_context_of(calls(image))[-1].args["source"])
    assert names(placed) == ["directory", "withFile"]
    assert placed[-1].args["path"] == "fraud-detector/1/model.onnx"
    assert calls(placed[-1].args["source"])[-1] == Call(
        "Directory", "file", {"path": "fraud-detector.onnx"}
    )


def test_test_scan_publish_and_benchmark_build_with_the_models(module: Any, tmp_path: Path) -> None:
    models = repository(tmp_path)
    given = dag.host().directory(str(models))
    with fake_engine(_answers()) as engine:
        asyncio.run(module.test(models=given))
        asyncio.run(module.scan(models=given))
        asyncio.run(module.publish(tag="v1.0.0", repository="acme/onnx", models=given))
        asyncio.run(module.benchmark(models=given, requests=10))
    images = []
    for query in engine.queries:
        for call in query:
            for value in call.args.values():
                if hasattr(value, "_ctx"):
                    chain = calls(value)
                    if "dockerBuild" in names(chain) and find(chain, "dockerBuild")[0].args.get(
                        "target"
                    ) in ("cpu", "gpu"):
                        images.append(chain)
        for image in [c.args["platformVariants"] for c in query if c.name == "publish"]:
            images += [calls(i) for i in image]
    served = {only(i, "dockerBuild").args.get("target") for i in images}
    assert served == {"cpu", "gpu"}
    for image in images:
        _assert_models_replaced(image, models)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "has no <name>/<version>/model.onnx and no single .onnx file (found: nothing)"),
        (["a.onnx", "b.onnx"], "several .onnx files (a.onnx, b.onnx)"),
        (
            ["mlp/model.onnx"],
            "has no <name>/<version>/model.onnx and no single .onnx file (found: mlp/model.onnx)",
        ),
        (["my model.onnx"], "'my model.onnx'"),
    ],
)
def test_a_folder_that_is_no_model_repository_is_refused(
    files: list[str], message: str, module: Any, tmp_path: Path
) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"onnx")
    with pytest.raises(ValueError) as error:
        model_layout(str(tmp_path), files)
    assert message in str(error.value) and "\n" not in str(error.value)
    with fake_engine() as engine, pytest.raises(ValueError):
        asyncio.run(module.build(models=dag.host().directory(str(tmp_path))))
    assert [q[-1].name for q in engine.queries] == ["glob"]  # only the folder was listed
