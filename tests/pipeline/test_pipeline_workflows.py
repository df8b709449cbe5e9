"""Structure of .github/workflows: each job is checkout + ONE pinned Dagger step.

zizmor (`commands.zizmor_command`) audits the workflows for security problems; this test
checks what is specific to this project: pins equal to dagger.json's engine, least
privilege, the checks CI runs are the module's checks, the release passes event data
and the token safely. `workflow_problems` is also run on broken copies: it can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from onnx_serving.main import OnnxServing

from .plan import REPO, module_functions

WORKFLOWS = REPO / ".github/workflows"
SHA_PIN = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+@[0-9a-f]{40}$")
ENGINE = json.loads((REPO / "dagger.json").read_text())["engineVersion"].removeprefix("v")
WRITE_ALLOWED = {"release.yml": {"packages"}}  # publishing is the only write


def load(path: Path) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    return {("on" if key is True else str(key)): value for key, value in raw.items()}


def workflow_problems(name: str, document: dict[str, Any]) -> list[str]:
    """Every rule a workflow breaks, as readable lines (empty: it is fine)."""
    problems: list[str] = []
    if document.get("permissions") != {}:
        problems.append("top-level permissions must be {} (jobs ask for what they need)")
    for job_name, job in document.get("jobs", {}).items():
        where = f"{name}:{job_name}"
        problems += _permission_problems(where, name, job.get("permissions"))
        steps = job.get("steps", [])
        if len(steps) != 2:
            problems.append(f"{where}: expected checkout + one Dagger step, got {len(steps)}")
            continue
        checkout, dagger_step = steps
        problems += _checkout_problems(where, checkout)
        problems += _dagger_problems(where, dagger_step)
    return problems


def _permission_problems(where: str, name: str, permissions: Any) -> list[str]:
    if not isinstance(permissions, dict):
        return [f"{where}: job permissions must be an explicit mapping, got {permissions!r}"]
    problems = []
    for scope, level in permissions.items():
        if level == "write" and scope not in WRITE_ALLOWED.get(name, set()):
            problems.append(f"{where}: {scope}: write is not needed here")
        elif level not in ("read", "write", "none"):
            problems.append(f"{where}: {scope}: {level!r} is not a permission level")
    return problems


def _checkout_problems(where: str, step: dict[str, Any]) -> list[str]:
    uses = str(step.get("uses", ""))
    problems = []
    if not (uses.startswith("actions/checkout@") and SHA_PIN.match(uses)):
        problems.append(f"{where}: first step must be actions/checkout pinned by SHA: {uses!r}")
    if step.get("with", {}).get("persist-credentials") is not False:
        problems.append(f"{where}: checkout must set persist-credentials: false")
    return problems


def _dagger_problems(where: str, step: dict[str, Any]) -> list[str]:
    uses = str(step.get("uses", ""))
    inputs = step.get("with", {})
    problems = []
    if not (uses.startswith("dagger/dagger-for-github@") and SHA_PIN.match(uses)):
        problems.append(f"{where}: second step must be dagger-for-github pinned by SHA: {uses!r}")
    if "run" in step:
        problems.append(f"{where}: no shell steps: the pipeline is the Dagger module")
    if str(inputs.get("version")) != ENGINE:
        problems.append(f"{where}: Dagger version {inputs.get('version')!r} != engine {ENGINE}")
    call = str(inputs.get("call", ""))
    if not call:
        problems.append(f"{where}: the Dagger step must `call` a module function")
    if "${{" in call:
        problems.append(f"{where}: expressions in `call` are script injection; pass via env")
    for key, value in step.get("env", {}).items():
        if "secrets." in str(value) and f"env://{key}" not in call:
            problems.append(f"{where}: secret {key} must reach Dagger only as env://{key}")
    return problems


def _files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist() -> None:
    assert [p.name for p in _files()] == ["ci.yml", "release.yml", "scan.yml"]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_workflow_follows_the_rules(path: Path) -> None:
    assert workflow_problems(path.name, load(path)) == []


def test_every_dagger_step_uses_the_same_action_pin() -> None:
    pins = {job["steps"][1]["uses"] for p in _files() for job in load(p)["jobs"].values()}
    assert len(pins) == 1, pins


def test_ci_runs_exactly_the_module_checks_on_push_and_pr() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    [job] = ci["jobs"].values()
    assert job["steps"][1]["with"]["call"] == "$CHECK"
    assert job["steps"][1]["env"] == {"CHECK": "${{ matrix.check }}"}
    checks = {n for n, f in module_functions(OnnxServing).items() if f.check}
    assert set(job["strategy"]["matrix"]["check"]) == checks


def test_release_publishes_the_pushed_tag_with_the_token_as_a_secret() -> None:
    release = load(WORKFLOWS / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    job = release["jobs"]["publish"]
    assert job["needs"] == "check"  # nothing is published unless the checks pass
    checks = {n for n, f in module_functions(OnnxServing).items() if f.check}
    assert set(release["jobs"]["check"]["strategy"]["matrix"]["check"]) == checks
    step = job["steps"][1]
    call = " ".join(step["with"]["call"].split())
    assert 'publish --tag "$RELEASE_TAG"' in call
    assert "--password env://REGISTRY_TOKEN" in call
    assert step["env"]["RELEASE_TAG"] == "${{ github.ref_name }}"
    assert step["env"]["REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert job["permissions"] == {"contents": "read", "packages": "write"}


def test_scan_runs_on_a_schedule_for_every_published_variant() -> None:
    scan = load(WORKFLOWS / "scan.yml")
    assert "schedule" in scan["on"]
    [job] = scan["jobs"].values()
    # No variant list of its own: `scan` without --variant covers the table's published ones
    # (test_pipeline_checks.py::test_scan_without_a_variant_scans_every_published_variant).
    assert "strategy" not in job
    assert job["steps"][1]["with"]["call"] == "scan"


BREAKAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "write-all at the top": lambda d: d.update(permissions="write-all"),
    "a job that can write contents": lambda d: _job(d)["permissions"].update(contents="write"),
    "a moving tag": lambda d: _step(d, 1).update(uses="dagger/dagger-for-github@v8"),
    "checkout keeping the token": lambda d: _step(d, 0)["with"].update(
        {"persist-credentials": True}
    ),
    "a drifted Dagger version": lambda d: _step(d, 1)["with"].update(version="0.21.10"),
    "a shell step": lambda d: _job(d)["steps"].append({"run": "echo hi"}),
    "an expression in call": lambda d: _step(d, 1)["with"].update(
        call="publish --tag ${{ github.ref_name }}"
    ),
    "a secret passed as text": lambda d: _step(d, 1)["with"].update(
        call='publish --tag "$RELEASE_TAG" --password "$REGISTRY_TOKEN"'
    ),
}


def _job(document: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = list(document["jobs"].values())[-1]  # release.yml: publish
    return job


def _step(document: dict[str, Any], index: int) -> dict[str, Any]:
    step: dict[str, Any] = _job(document)["steps"][index]
    return step


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_rules_catch_a_broken_workflow(breakage: str) -> None:
    broken = copy.deepcopy(load(WORKFLOWS / "release.yml"))
    BREAKAGES[breakage](broken)
    assert workflow_problems("release.yml", broken) != []
