"""Naming and identity of the models an image serves: `--model-name`/`--model-version` for a
single file, `--model-url`/`--model-sha256` for a model fetched at build time, and the models
label (name/version@sha256) that every build computes the same way — sha256sum in the base
image for the Dagger module, hashlib for scripts/."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dagger import dag

from onnx_serving import local
from onnx_serving.build import SHA256SUM_MODELS
from onnx_serving.models import (
    ModelIdentity,
    ModelOptions,
    identities_from_sha256sum,
    model_layout,
    models_label,
    parse_models_label,
)

from .plan import Call, calls, fake_engine, find, names, only

SHA = "0123456789abcdef" * 4
URL = "https://models.example/releases/fraud-detector.onnx"


def _repository(root: Path) -> Path:
    for path, content in {"iris/1": b"one", "iris/2": b"two", "text-encoder/7": b"seven"}.items():
        (root / path).mkdir(parents=True)
        (root / path / "model.onnx").write_bytes(content)
    (root / "iris/README.md").write_text("not a model")
    for unserved in ("iris/0", "iris/01"):  # no version: the server skips them, both labels too
        (root / unserved).mkdir()
        (root / unserved / "model.onnx").write_bytes(b"not served")
    return root


def test_the_module_and_the_scripts_label_a_repository_alike(tmp_path: Path) -> None:
    models = _repository(tmp_path / "models")
    # The very command the module runs in the base image, run here on the same folder.
    listing = subprocess.run(
        ["sh", "-c", SHA256SUM_MODELS.replace("/models", str(models))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from_module = models_label(identities_from_sha256sum(listing))
    assert from_module == local.models_identity(models)
    expected = [
        ModelIdentity("iris", 1, hashlib.sha256(b"one").hexdigest()),
        ModelIdentity("iris", 2, hashlib.sha256(b"two").hexdigest()),
        ModelIdentity("text-encoder", 7, hashlib.sha256(b"seven").hexdigest()),
    ]
    assert parse_models_label(from_module) == expected
    assert from_module.split(",")[0] == f"iris/1@sha256:{expected[0].sha256}"


@pytest.mark.parametrize(
    "label", ["iris/1@sha256:abc", "iris@sha256:" + SHA, "iris/x@sha256:" + SHA, "iris/1"]
)
def test_a_malformed_label_entry_is_named(label: str) -> None:
    with pytest.raises(ValueError, match=f"model label entry '{label}'"):
        parse_models_label(label)


def test_a_single_file_is_named_and_versioned_by_the_options() -> None:
    options = ModelOptions(name="fraud", version=3).checked(models_given=True)
    layout = model_layout("m", ["detector.onnx"], options)
    assert (layout.names, layout.repository_path) == (("fraud",), "fraud/3/model.onnx")
    default = model_layout("m", ["detector.onnx"])
    assert (default.names, default.repository_path) == (("detector",), "detector/1/model.onnx")


def test_a_repository_refuses_a_model_name() -> None:
    with pytest.raises(ValueError, match=r"name a single \.onnx file; 'm' is a repository"):
        model_layout("m", ["iris/1/model.onnx"], ModelOptions(name="other"))
    with pytest.raises(ValueError, match="is a repository"):
        model_layout("m", ["iris/1/model.onnx"], ModelOptions(version=2))


@pytest.mark.parametrize(
    ("options", "models_given", "message"),
    [
        (ModelOptions(name="a/b"), False, "--model-name 'a/b'"),
        (ModelOptions(version=-1), False, "--model-version -1"),
        (ModelOptions(sha256=SHA), False, "give the URL too"),
        (ModelOptions(url=URL), False, "needs the file's sha256"),
        (ModelOptions(url=URL, sha256="sha256:" + SHA[:-1]), False, "'sha256:"),
        (ModelOptions(url="file:///etc/passwd", sha256=SHA), False, "'file:///etc/passwd'"),
        (ModelOptions(url=URL, sha256=SHA), True, "either --models"),
        (ModelOptions(url="https://models.example/", sha256=SHA), False, "give --model-name"),
        (ModelOptions(name="iris"), False, "give it with --models, or fetch it with --model-url"),
        (ModelOptions(version=2), False, "--model-name/--model-version name a single"),
        (
            ModelOptions(url="https://bot:s3cret@models.example/m.onnx", sha256=SHA),
            False,
            "no user or password in the URL",
        ),
    ],
)
def test_bad_model_options_are_one_line_errors(
    options: ModelOptions, models_given: bool, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        options.checked(models_given)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "s3cret" not in str(error.value)


def test_a_url_model_is_named_after_its_file_and_its_digest_normalised() -> None:
    checked = ModelOptions(url=URL, sha256="SHA256:" + SHA.upper()).checked(False)
    assert (checked.name, checked.sha256, checked.served_version) == ("fraud-detector", SHA, 1)
    assert checked.build_args() == {
        "MODEL_URL": URL,
        "MODEL_SHA256": SHA,
        "MODEL_NAME": "fraud-detector",
        "MODEL_VERSION": "1",
    }
    assert ModelOptions().build_args() == {}


def test_a_url_build_passes_the_download_and_its_identity_without_hashing(
    module: Any,
) -> None:
    with fake_engine() as engine:
        image = asyncio.run(
            module.build(model_url=URL, model_sha256=SHA, model_name="fraud", model_version=2)
        )
    build_args = {
        a["name"]: a["value"] for a in only(calls(image), "dockerBuild").args["buildArgs"]
    }
    assert build_args == {
        "MODELS": f"fraud/2@sha256:{SHA}",  # known before the build: the digest is given
        "MODEL_URL": URL,
        "MODEL_SHA256": SHA,
        "MODEL_NAME": "fraud",
        "MODEL_VERSION": "2",
    }
    assert engine.identity_queries == []  # nothing to hash: the build checks the digest


def test_a_single_file_build_places_it_under_the_given_name_and_version(
    module: Any, tmp_path: Path
) -> None:
    (tmp_path / "exported.onnx").write_bytes(b"onnx")
    with fake_engine():
        image = asyncio.run(
            module.build(
                models=dag.host().directory(str(tmp_path)), model_name="fraud", model_version=4
            )
        )
    context = calls(image)[: names(calls(image)).index("dockerBuild")]
    placed = calls(context[-1].args["source"])
    assert placed[-1].args["path"] == "fraud/4/model.onnx"
    assert calls(placed[-1].args["source"])[-1] == Call(
        "Directory", "file", {"path": "exported.onnx"}
    )


def test_the_identity_is_hashed_in_the_models_the_build_bakes(module: Any, tmp_path: Path) -> None:
    (tmp_path / "exported.onnx").write_bytes(b"onnx")
    with fake_engine() as engine:
        asyncio.run(module.build(models=dag.host().directory(str(tmp_path)), model_name="fraud"))
    [_, sha256sum] = engine.identity_queries
    mounted = only(sha256sum, "withMountedDirectory").args
    assert mounted["path"] == "/models"
    # The context's models/ (the file placed as fraud/1/model.onnx), not the repository's.
    source = calls(mounted["source"])
    assert names(source)[-1] == "directory" and source[-1].args == {"path": "models"}
    assert find(source, "withDirectory")[-1].args["path"] == "models"
