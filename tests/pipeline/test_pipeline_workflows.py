"""Structure of .github/workflows: every job is the pinned checkout plus the Dagger CLI, and
nothing but Dagger runs.

A job is either checkout + one Dagger step (`dagger check` or a `call`), or, where a token is
needed, checkout + the action installing the CLI + one `dagger call` step whose environment
alone holds the token. zizmor (`commands.zizmor_command`) audits the workflows for security
problems; this test checks what is specific to this project: pins equal to dagger.json's
engine, least privilege (id-token only where cosign signs), the checks CI runs are the
module's, event data and tokens reach the CLI only through the environment.
`workflow_problems` is also run on broken copies: it can fail.
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
# The only writes: pushing images (packages) and signing them (id-token), by publishing jobs.
WRITE_ALLOWED = {("release.yml", "publish"), ("ci.yml", "edge")}
SIGNING = "--oidc-request-token env://ACTIONS_ID_TOKEN_REQUEST_TOKEN"


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
        steps = job.get("steps", [])
        problems += _permission_problems(where, (name, job_name), job.get("permissions"), steps)
        if len(steps) not in (2, 3):
            problems.append(f"{where}: expected checkout + Dagger (+ one call), got {len(steps)}")
            continue
        problems += _checkout_problems(where, steps[0])
        problems += _action_problems(where, steps[1], installs_only=len(steps) == 3)
        if len(steps) == 3:
            problems += _call_problems(where, steps[2])
    return problems


def _permission_problems(
    where: str, job: tuple[str, str], permissions: Any, steps: list[dict[str, Any]]
) -> list[str]:
    if not isinstance(permissions, dict):
        return [f"{where}: job permissions must be an explicit mapping, got {permissions!r}"]
    problems = []
    for scope, level in permissions.items():
        if level == "write" and (scope not in ("packages", "id-token") or job not in WRITE_ALLOWED):
            problems.append(f"{where}: {scope}: write is not needed here")
        elif level not in ("read", "write", "none"):
            problems.append(f"{where}: {scope}: {level!r} is not a permission level")
    signs = any(SIGNING in " ".join(str(s.get("run", "")).split()) for s in steps)
    if (permissions.get("id-token") == "write") != signs:
        problems.append(f"{where}: id-token: write exactly where cosign signs")
    return problems


def _checkout_problems(where: str, step: dict[str, Any]) -> list[str]:
    uses = str(step.get("uses", ""))
    problems = []
    if not (uses.startswith("actions/checkout@") and SHA_PIN.match(uses)):
        problems.append(f"{where}: first step must be actions/checkout pinned by SHA: {uses!r}")
    if step.get("with", {}).get("persist-credentials") is not False:
        problems.append(f"{where}: checkout must set persist-credentials: false")
    return problems


def _action_problems(where: str, step: dict[str, Any], installs_only: bool) -> list[str]:
    uses = str(step.get("uses", ""))
    inputs = step.get("with", {})
    problems = []
    if not (uses.startswith("dagger/dagger-for-github@") and SHA_PIN.match(uses)):
        problems.append(f"{where}: second step must be dagger-for-github pinned by SHA: {uses!r}")
    if "run" in step:
        problems.append(f"{where}: no shell steps: the pipeline is the Dagger module")
    if str(inputs.get("version")) != ENGINE:
        problems.append(f"{where}: Dagger version {inputs.get('version')!r} != engine {ENGINE}")
    runs = {k: v for k, v in inputs.items() if k in ("call", "verb", "check", "args", "shell")}
    if installs_only and (runs or step.get("env")):
        problems.append(f"{where}: the install step runs nothing and holds no environment")
    if not installs_only and runs not in ({"verb": "check"},) and set(runs) != {"call"}:
        problems.append(f"{where}: the Dagger step runs `dagger check` or one `call`: {runs}")
    if "${{" in str(inputs.get("call", "")):
        problems.append(f"{where}: expressions in `call` are script injection; pass via env")
    if any("secrets." in str(v) for v in step.get("env", {}).values()):
        problems.append(f"{where}: a token belongs in the environment of its call step only")
    return problems


def _call_problems(where: str, step: dict[str, Any]) -> list[str]:
    run = " ".join(str(step.get("run", "")).split())
    problems = []
    if "uses" in step or not run.startswith("dagger call ") or re.search(r"[;&|`]|\$\(", run):
        problems.append(f"{where}: the third step runs one `dagger call` and nothing else")
    if "${{" in run:
        problems.append(f"{where}: expressions in a script are injection; pass via env")
    for key, value in step.get("env", {}).items():
        if "secrets." in str(value) and f"env://{key}" not in run:
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


def _run(job: dict[str, Any]) -> str:
    return " ".join(job["steps"][2]["run"].split())


def test_ci_runs_the_module_checks_in_one_engine_and_publishes_main_as_edge() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    check = ci["jobs"]["check"]
    assert check["steps"][1]["with"] == {"version": ENGINE, "verb": "check"}
    assert {n for n, f in module_functions(OnnxServing).items() if f.check} == {
        "lint",
        "test",
        "scan",
    }
    edge = ci["jobs"]["edge"]
    assert edge["needs"] == "check"
    assert edge["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert "publish --edge" in _run(edge) and '--revision "$REVISION"' in _run(edge)
    assert edge["steps"][2]["env"]["REVISION"] == "${{ github.sha }}"


def test_release_publishes_the_pushed_tag_with_the_token_as_a_secret() -> None:
    release = load(WORKFLOWS / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["jobs"]["check"]["steps"][1]["with"] == {"version": ENGINE, "verb": "check"}
    job = release["jobs"]["publish"]
    assert job["needs"] == "check"  # nothing is published unless the checks pass
    assert job["steps"][0]["with"]["fetch-depth"] == 0  # the release tags: backports
    run = _run(job)
    assert 'publish --tag "$RELEASE_TAG"' in run
    assert "--password env://REGISTRY_TOKEN" in run and SIGNING in run
    env = job["steps"][2]["env"]
    assert env["RELEASE_TAG"] == "${{ github.ref_name }}"
    assert env["REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert "env" not in job["steps"][1]  # the CLI install never sees the token
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}


def test_scan_pulls_and_scans_what_is_published_weekly() -> None:
    scan = load(WORKFLOWS / "scan.yml")
    assert "schedule" in scan["on"]
    [job] = scan["jobs"].values()
    assert _run(job).startswith("dagger call scan-published ")
    assert "--tags latest,edge" in _run(job)
    assert job["permissions"] == {"contents": "read", "packages": "read"}


BREAKAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "write-all at the top": lambda d: d.update(permissions="write-all"),
    "a job that can write contents": lambda d: _job(d)["permissions"].update(contents="write"),
    "the check job may sign": lambda d: d["jobs"]["check"]["permissions"].update(
        {"id-token": "write"}
    ),
    "a moving tag": lambda d: _step(d, 1).update(uses="dagger/dagger-for-github@v8"),
    "checkout keeping the token": lambda d: _step(d, 0)["with"].update(
        {"persist-credentials": True}
    ),
    "a drifted Dagger version": lambda d: _step(d, 1)["with"].update(version="0.21.10"),
    "another shell step": lambda d: _job(d)["steps"].append({"run": "echo hi"}),
    "a script beside the call": lambda d: _step(d, 2).update(run="curl x | sh; dagger call x"),
    "an expression in the call": lambda d: _step(d, 2).update(
        run="dagger call publish --tag ${{ github.ref_name }}"
    ),
    "a secret passed as text": lambda d: _step(d, 2).update(
        run='dagger call publish --tag "$RELEASE_TAG" --password "$REGISTRY_TOKEN"'
    ),
    "the token in the install step": lambda d: _step(d, 1).update(
        env={"REGISTRY_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    ),
    "the install step calls": lambda d: _step(d, 1)["with"].update(call="publish"),
}


def _job(document: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = document["jobs"]["publish"]
    return job


def _step(document: dict[str, Any], index: int) -> dict[str, Any]:
    step: dict[str, Any] = _job(document)["steps"][index]
    return step


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_rules_catch_a_broken_workflow(breakage: str) -> None:
    broken = copy.deepcopy(load(WORKFLOWS / "release.yml"))
    BREAKAGES[breakage](broken)
    assert workflow_problems("release.yml", broken) != []
