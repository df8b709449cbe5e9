"""The variant table is the one place a variant is defined: a throwaway row added to a copy of
it reaches every consumer (a published one gets its deploy manifests too), a published row
without pod sizing is refused, a row whose Dockerfile target is missing is caught, and each
row's lock is the one its Dockerfile installs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from onnx_serving import variants
from onnx_serving.variants import AMD64, ARM64, Variant

from .plan import REPO

# What a new variant needs: an enum member and a row (ci/src/onnx_serving/variants.py) and a
# Dockerfile target; this one copies the cpu venv, so its lock is runtime.lock, and it is
# published, so its row says how its pods are sized.
MEMBER = '    basic = "basic"\n'
NEW_MEMBER = MEMBER + '    slim = "slim"\n'
ROW_ANCHOR = "VARIANTS: dict[Variant, VariantSpec] = {\n"
SIZING = """        sizing=PodSizing(
            cpu=1,
            memory="512Mi",
            gpus=0,
            startup_s=30,
            min_replicas=1,
            max_replicas=3,
            max_surge=1,
            max_unavailable=0,
            kserve_concurrency=4,
        ),
"""
NEW_ROW = """    Variant.slim: VariantSpec(
        dockerfile=DOCKERFILE,
        target="slim",
        tag_suffix="-slim",
        platforms=(AMD64,),
        published=True,
        description="a throwaway variant",
{sizing}    ),
"""
NEW_TARGET = """
FROM serving AS slim
COPY --from=venv-cpu /opt/venv /opt/venv
COPY --from=app /app /app
"""
DIGEST = "sha256:" + "ab" * 32

# Run in the copy: every consumer of the table, asked what it sees.
PROBE = f"""
import asyncio, json
from onnx_serving import local, manifests, validation, variants
from onnx_serving.deploy import kustomize
from onnx_serving.main import OnnxServing
from bench.image_report import variant_list
from tests.images import docker_support
from tests.pipeline.conftest import make_module
from tests.pipeline.plan import FakeEngine, dockerfile_target, fake_engine, calls, only

seen = {{}}
seen["enum"] = [v.value for v in variants.Variant]
seen["published"] = [v.value for v in validation.published_variants(None)]
seen["lock"] = variants.Variant.slim.spec.lock
seen["locks"] = {{k: list(v) for k, v in variants.lock_platforms().items()}}
seen["image_tests"] = [v.value for v in docker_support.VARIANTS]
seen["local_build"] = str(local.parse_variant("slim"))
seen["base_image"] = local.base_image(variants.Variant.slim)
module = make_module()
clean = json.dumps({{"SchemaVersion": 2, "Results": []}})
def contents(chain):
    if chain[-2].args.get("path") == "/scan/report.json":
        return clean
    return FakeEngine().answer(chain)
with fake_engine({{"contents": contents}}) as engine:
    out = asyncio.run(module.publish(tag="v1.0.0", repository="acme/onnx", manifests=True))
pushed, _, documents = out.partition("\\n---\\n")
seen["published_tags"] = [line.split("@")[0] for line in pushed.splitlines() if "slim" in line]
seen["publish_manifests"] = [
    line[2:] for line in documents.splitlines() if line.startswith("# slim/")
]
rendered = manifests.render("ghcr.io/acme/onnx:1.0.0-slim@{DIGEST}", "slim")
seen["manifests"] = sorted(rendered)
seen["rendered"] = rendered["slim/kubernetes.yaml"]
seen["deploy_sources"] = sorted(p for p in kustomize.sources() if "slim" in p)
with fake_engine():  # the build labels its models: sha256sum through the engine
    build = only(calls(asyncio.run(module.build(variant="slim"))), "dockerBuild")
seen["dagger_build"] = list(dockerfile_target(build))
seen["image_report"] = [str(v) for v in variant_list("basic,slim")]
print(json.dumps(seen))
"""


def throwaway_copy(tmp_path: Path, with_target: bool = True, sizing: str = SIZING) -> Path:
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
    row = NEW_ROW.format(sizing=sizing)
    table.write_text(text.replace(MEMBER, NEW_MEMBER).replace(ROW_ANCHOR, ROW_ANCHOR + row))
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


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What every consumer sees in a copy with the new published row and its target."""
    root = throwaway_copy(tmp_path_factory.mktemp("probe"))
    done = run_in(root, "-c", PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_a_new_row_reaches_every_consumer(seen: dict[str, Any]) -> None:
    assert seen["enum"][-1] == "slim"  # the Dagger enum: `--variant slim` in --help
    assert seen["published"] == ["cpu", "gpu", "slim"]  # publish, the scan check and workflow
    assert seen["lock"] == "requirements/runtime.lock"  # read from its Dockerfile target
    assert seen["locks"]["requirements/runtime.lock"] == ["linux/amd64", "linux/arm64"]
    assert seen["image_tests"][-1] == "slim"  # every image test is parametrized over it
    assert seen["local_build"] == "slim"  # scripts/ build it
    assert seen["base_image"] == "python:3.11-slim-bookworm"  # the Dockerfile's own base
    assert seen["published_tags"] == [
        f"ghcr.io/acme/onnx:{tag}-slim" for tag in ("1.0.0", "1.0", "1", "latest")
    ]
    assert seen["dagger_build"] == ["dockerfiles/Dockerfile", "slim"]
    assert seen["image_report"] == ["basic", "slim"]  # bench/ measures it


def test_a_new_published_row_gets_deploy_manifests(seen: dict[str, Any]) -> None:
    files = ["slim/kserve/inferenceservice.yaml", "slim/kserve/servingruntime.yaml"]
    files.append("slim/kubernetes.yaml")
    assert seen["manifests"] == files  # `dagger call manifests --variant slim`
    assert sorted(seen["publish_manifests"]) == files  # `publish --manifests`
    assert seen["deploy_sources"] == [  # deploy/ (scripts/manifests.sh --sources deploy)
        "kserve/slim/inferenceservice.yaml",
        "kserve/slim/kustomization.yaml",
        "kserve/slim/servingruntime.yaml",
        "kubernetes/overlays/slim/kustomization.yaml",
    ]
    # Its row's sizing, its suffix, its digest.
    workload = seen["rendered"]
    assert "name: onnx-serving-slim\n" in workload
    assert f"image: ghcr.io/acme/onnx@{DIGEST}\n" in workload
    assert "memory: 512Mi\n" in workload and "maxReplicas: 3\n" in workload


def test_a_published_row_without_sizing_is_refused(tmp_path: Path) -> None:
    root = throwaway_copy(tmp_path, sizing="")
    done = run_in(root, "-c", "import onnx_serving.variants")
    assert done.returncode == 1
    assert "ValueError: variant 'slim' is published but has no sizing" in done.stderr
    # The same check, on the table as loaded here.
    unsized = replace(variants.VARIANTS[Variant.gpu], sizing=None)
    with pytest.raises(ValueError, match=r"^variant 'gpu' is published but has no sizing"):
        variants.check_table({**variants.VARIANTS, Variant.gpu: unsized})
    variants.check_table({Variant.dev: replace(unsized, published=False)})  # unpublished: fine


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


def test_each_lock_is_read_from_the_dockerfile_and_exists() -> None:
    locks = {variant: variant.spec.lock for variant in Variant}
    assert locks == {
        Variant.cpu: "requirements/runtime.lock",
        Variant.gpu: "requirements/gpu.lock",
        Variant.dev: "requirements/dev.lock",
        Variant.basic: "requirements/runtime.lock",  # Dockerfile.basic's `pip install -r`
    }
    for variant, lock in locks.items():
        assert (REPO / lock).is_file(), (variant, lock)


# A Dockerfile whose targets share one venv stage and have one of their own: what
# `lock_platforms` reads, not a restated lock per row.
LOCKS_DOCKERFILE = """\
FROM base AS venv-shared
RUN --mount=type=bind,source=dockerfiles/build-venv.sh,target=/tmp/build-venv \\
    --mount=type=bind,source=shared.lock,target=/tmp/requirements.lock \\
    sh /tmp/build-venv /tmp/requirements.lock
FROM base AS venv-own
RUN --mount=type=bind,source=own.lock,target=/tmp/requirements.lock sh /tmp/build-venv
FROM base AS serving
FROM serving AS one
COPY --from=venv-shared /opt/venv /opt/venv
FROM serving AS two
COPY --from=venv-own /opt/venv /opt/venv
FROM one AS three
"""


def test_a_lock_is_built_for_every_platform_of_the_images_installing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dockerfiles").mkdir()
    (tmp_path / "dockerfiles/Dockerfile").write_text(LOCKS_DOCKERFILE)
    spec = variants.VARIANTS[Variant.dev]
    table = {
        Variant.cpu: replace(spec, target="one", platforms=(AMD64,)),
        Variant.dev: replace(spec, target="two", platforms=(ARM64,)),
        Variant.basic: replace(spec, target="three", platforms=(ARM64, AMD64)),
    }
    monkeypatch.setattr(variants, "VARIANTS", table)
    monkeypatch.setattr(variants, "REPO_ROOT", tmp_path)
    assert variants.lock_platforms() == {"shared.lock": (AMD64, ARM64), "own.lock": (ARM64,)}
    # What scripts/lock.sh reads: one lock per line, then its platforms.
    assert variants.main(["locks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["shared.lock linux/amd64 linux/arm64", "own.lock linux/arm64"]


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("FROM base AS cpu\n", "cpu", "target 'cpu' installs no lock"),
        ("FROM base\nRUN pip install .\n", "", "expected one pip install -r <lock>, found []"),
        (
            "FROM b AS venv-x\n"
            "RUN --mount=type=bind,source=a.lock,target=/tmp/requirements.lock \\\n"
            "    --mount=type=bind,source=b.lock,target=/tmp/requirements.lock x\n"
            "FROM b AS x\nCOPY --from=venv-x /opt/venv /opt/venv\n",
            "x",
            "expected one lock mount of stage 'venv-x', found ['a.lock', 'b.lock']",
        ),
    ],
)
def test_a_dockerfile_without_one_lock_is_named(text: str, target: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(f"dockerfiles/X: {message}")):
        variants.dockerfile_lock("dockerfiles/X", target, text)


def test_an_unknown_argument_is_named_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert variants.main(["platforms"]) == 2
    assert capsys.readouterr().err == (
        "usage: python3 -m onnx_serving.variants [locks], not ['platforms']\n"
    )
