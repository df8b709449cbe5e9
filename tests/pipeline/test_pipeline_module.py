"""The module's shape: dagger.json, ci/pyproject.toml, the API the SDK registers, mypy."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib

from onnx_serving.build import SOURCE_IGNORE
from onnx_serving.main import OnnxServing
from onnx_serving.variants import ALL_DOCKERFILES, Variant

from .plan import REPO, SDK_VERSION, module_functions

FUNCTIONS = {
    "build",
    "serve",
    "test",
    "lint",
    "scan",
    "sbom",
    "publish",
    "scan_published",
    "benchmark",
    "manifests",
}
CHECKS = {"test", "lint", "scan"}


def test_dagger_json_pins_the_engine_to_the_sdk() -> None:
    config = json.loads((REPO / "dagger.json").read_text())
    assert config == {
        "name": "onnx-serving",
        "engineVersion": f"v{SDK_VERSION}",
        "sdk": {"source": "python"},
        "source": "ci",
    }


def test_ci_project_points_the_runtime_at_the_main_object() -> None:
    project = tomllib.loads((REPO / "ci/pyproject.toml").read_text())
    assert project["tool"]["uv"]["sources"]["dagger-io"] == {"path": "sdk", "editable": True}
    entry = project["project"]["entry-points"]["dagger.mod"]["main_object"]
    module_name, _, attribute = entry.partition(":")
    assert getattr(importlib.import_module(module_name), attribute) is OnnxServing
    # The conventional import works too (lazy: helpers stay importable without the SDK).
    assert importlib.import_module("onnx_serving").OnnxServing is OnnxServing
    ignored = (REPO / "ci/.gitignore").read_text().split()
    assert "/sdk" in ignored


def test_every_dockerfile_is_known_to_the_pipeline() -> None:
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("dockerfiles/Dockerfile*"))
    assert sorted(ALL_DOCKERFILES) == on_disk
    assert {v.spec.dockerfile for v in Variant} == set(on_disk)


def test_every_variant_names_a_stage_of_its_dockerfile() -> None:
    for variant in Variant:
        text = (REPO / variant.spec.dockerfile).read_text()
        stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
        if variant.spec.target:
            assert variant.spec.target in stages, (variant, stages)
        else:
            assert stages == [], f"{variant}: a single-stage file needs no target"


def test_the_registered_api_is_documented_for_help() -> None:
    functions = module_functions(OnnxServing)
    assert set(functions) == FUNCTIONS | {""}
    for name, info in functions.items():
        assert info.doc and info.doc.strip(), f"{name or 'constructor'} has no docstring"
        for argument, spec in info.arguments.items():
            assert spec.doc and spec.doc.strip(), f"{name}: argument {argument} has no Doc"
    assert {n for n, i in functions.items() if i.check} == CHECKS
    # `dagger check` calls checks without arguments.
    for name in CHECKS:
        assert not any(a.required for a in functions[name].arguments.values()), name
    # Results that depend on the outside world or on today are never reused.
    never = {"publish", "scan", "scan_published", "benchmark"}
    assert {name for name, info in functions.items() if info.cache == "never"} == never
    # --tag or --edge: neither is required, one is (test_pipeline_invalid_args.py). The
    # repository is: no default pushes to a repository nobody owns.
    assert [n for n, a in functions["publish"].arguments.items() if a.required] == ["repository"]
    required = [n for n, a in functions["scan_published"].arguments.items() if a.required]
    assert required == ["repository"]
    assert functions["publish"].arguments["git"].default_path == "/.git"


def test_source_defaults_to_the_repo_root_without_local_clutter() -> None:
    source = module_functions(OnnxServing)[""].arguments["source"]
    assert source.default_path == "/"
    assert source.ignore == SOURCE_IGNORE
    assert {".git", ".venv", "**/__pycache__", "ci/sdk"} <= set(SOURCE_IGNORE)


def test_mypy_is_clean_on_the_module_and_its_tests() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "ci/src", "tests/pipeline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
