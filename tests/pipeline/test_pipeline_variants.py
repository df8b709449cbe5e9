"""The variant table is the one place a variant is defined: a throwaway row added to a copy of
it reaches every consumer, and a row whose Dockerfile target is missing is caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from onnx_serving import variants
from onnx_serving.variants import AMD64, ARM64, Variant

from .plan import REPO

# What a new variant needs: an enum member and a row (ci/src/onnx_serving/variants.py) and a
# Dockerfile target; this one reuses runtime.lock, so it needs no lock of its own.
MEMBER = '    basic = "basic"\n'
NEW_MEMBER = MEMBER + '    slim = "slim"\n'
ROW_ANCHOR = "VARIANTS: dict[Variant, VariantSpec] = {\n"
NEW_ROW = """    Variant.slim: VariantSpec(
        DOCKERFILE,
        "slim",
        "requirements/runtime.lock",
        "-slim",
        (AMD64,),
        True,
        "a throwaway variant",
    ),
"""
NEW_TARGET = """
FROM serving AS slim
COPY --from=venv-cpu /opt/venv /opt/venv
COPY --from=app /app /app
"""

# Run in the copy: every consumer of the table, asked what it sees.
PROBE = """
import asyncio, json
from onnx_serving import local, validation, variants
from onnx_serving.main import OnnxServing
from bench.image_report import variant_list
from tests.images import docker_support
from tests.pipeline.conftest import make_module
from tests.pipeline.plan import FakeEngine, dockerfile_target, fake_engine, calls, only

seen = {}
seen["enum"] = [v.value for v in variants.Variant]
seen["published"] = [v.value for v in validation.published_variants(None)]
seen["locks"] = {k: list(v) for k, v in variants.lock_platforms().items()}
seen["image_tests"] = [v.value for v in docker_support.VARIANTS]
seen["local_build"] = str(local.parse_variant("slim"))
seen["base_image"] = local.base_image(variants.Variant.slim)
module = make_module()
clean = json.dumps({"SchemaVersion": 2, "Results": []})
def contents(chain):
    if chain[-2].args.get("path") == "/scan/report.json":
        return clean
    return FakeEngine().answer(chain)
with fake_engine({"contents": contents}) as engine:
    out = asyncio.run(module.publish(tag="v1.0.0", repository="acme/onnx"))
seen["published_tags"] = [line.split("@")[0] for line in out.splitlines() if "slim" in line]
build = only(calls(asyncio.run(module.build(variant="slim"))), "dockerBuild")
seen["dagger_build"] = list(dockerfile_target(build))
seen["image_report"] = [str(v) for v in variant_list("basic,slim")]
print(json.dumps(seen))
"""


def throwaway_copy(tmp_path: Path, with_target: bool = True) -> Path:
    """A copy of the table's package, Dockerfiles, bench/ and tests/, plus the new row."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "ci/src/onnx_serving", root / "ci/src/onnx_serving", ignore=ignore)
    for folder in ("dockerfiles", "bench", "tests", "requirements"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("results"))
    shutil.copy2(REPO / ".trivyignore.yaml", root / ".trivyignore.yaml")  # publish's gate
    table = root / "ci/src/onnx_serving/variants.py"
    text = table.read_text()
    assert MEMBER in text and ROW_ANCHOR in text
    table.write_text(text.replace(MEMBER, NEW_MEMBER).replace(ROW_ANCHOR, ROW_ANCHOR + NEW_ROW))
    if with_target:
        dockerfile = root / "dockerfiles/Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + NEW_TARGET)
    return root


def run_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{root}/ci/src:{root}"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_new_row_reaches_every_consumer(tmp_path: Path) -> None:
    root = throwaway_copy(tmp_path)
    done = run_in(root, "-c", PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["enum"][-1] == "slim"  # the Dagger enum: `--variant slim` in --help
    assert seen["published"] == ["cpu", "gpu", "slim"]  # publish, the scan check and workflow
    assert seen["locks"]["requirements/runtime.lock"] == ["linux/amd64", "linux/arm64"]
    assert seen["image_tests"][-1] == "slim"  # every image test is parametrized over it
    assert seen["local_build"] == "slim"  # scripts/ build it
    assert seen["base_image"] == "python:3.11-slim-bookworm"  # the Dockerfile's own base
    assert seen["published_tags"] == [
        f"ghcr.io/acme/onnx:{tag}-slim" for tag in ("1.0.0", "1.0", "1", "latest")
    ]
    assert seen["dagger_build"] == ["dockerfiles/Dockerfile", "slim"]
    assert seen["image_report"] == ["basic", "slim"]  # bench/ measures it


@pytest.mark.parametrize("with_target", [True, False], ids=["target", "no-target"])
def test_the_dockerfile_check_sees_a_missing_target(tmp_path: Path, with_target: bool) -> None:
    root = throwaway_copy(tmp_path, with_target=with_target)
    done = run_in(
        root,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/pipeline/test_pipeline_module.py::test_every_variant_names_a_stage_of_its_dockerfile",
    )
    assert (done.returncode == 0) is with_target, done.stdout[-3000:]


def test_a_lock_is_built_for_every_platform_of_the_images_installing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = variants.VARIANTS[Variant.cpu]
    table = {
        Variant.cpu: replace(spec, lock="shared.lock", platforms=(AMD64,)),
        Variant.dev: replace(spec, lock="own.lock", platforms=(ARM64,)),
        Variant.gpu: replace(spec, lock="shared.lock", platforms=(ARM64, AMD64)),
    }
    monkeypatch.setattr(variants, "VARIANTS", table)
    assert variants.lock_platforms() == {"shared.lock": (AMD64, ARM64), "own.lock": (ARM64,)}
    # What scripts/lock.sh reads: one lock per line, then its platforms.
    assert variants.main(["locks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["shared.lock linux/amd64 linux/arm64", "own.lock linux/arm64"]


def test_an_unknown_argument_is_named_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert variants.main(["platforms"]) == 2
    assert capsys.readouterr().err == (
        "usage: python3 -m onnx_serving.variants [locks], not ['platforms']\n"
    )
