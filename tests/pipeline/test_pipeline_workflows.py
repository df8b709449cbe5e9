"""Structure of .github/workflows: every job is the pinned checkout plus one Dagger step, and
nothing but Dagger runs.

That step runs `dagger check` or one `call`; the values and tokens a call reads are in that
step's environment alone, named in its text as "$VAR" and env://VAR. dagger-for-github
v8.4.1 (action.yml) pastes `call` into the bash script of its own last step, where the
caller step's `env:` is in the environment: bash expands "$VAR" there. Its `check` input
only selects `dagger check`, whose arguments are check patterns (cmd/dagger/checks.go).

zizmor (`commands.zizmor_command`) audits the workflows for security problems; this test
checks what is specific to this project: pins equal to dagger.json's engine, least privilege
(id-token only where cosign signs), the checks CI runs are the module's, event data and tokens
reach the CLI only through the environment, only a pull request's run is cancelled by a newer
one, and every call that builds images takes its models from the one place that says where
they are (the repository variable MODELS_DIR, default models/).
`workflow_problems` is also run on broken copies: it can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
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
# Dagger Cloud's engine cache where the repository has the secret; a cold engine if not.
CLOUD_TOKEN = "${{ secrets.DAGGER_CLOUD_TOKEN }}"
# The only writes: pushing images (packages) and signing them (id-token), by publishing jobs.
WRITE_ALLOWED = {("release.yml", "publish"), ("ci.yml", "edge")}
SIGNING = "--oidc-request-token env://ACTIONS_ID_TOKEN_REQUEST_TOKEN"
# Where the models are: one repository variable, read by every call that builds images.
MODELS_ENV = "${{ vars.MODELS_DIR || 'models' }}"
MODELS_ARG = '--models "$MODELS_DIR"'
FUNCTIONS = module_functions(OnnxServing)
# Only a pull request's newer push cancels its running check; nothing else is ever cut short.
PR_ONLY = "${{ github.event_name == 'pull_request' }}"


def load(path: Path) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    return {("on" if key is True else str(key)): value for key, value in raw.items()}


def workflow_problems(name: str, document: dict[str, Any]) -> list[str]:
    """Every rule a workflow breaks, as readable lines (empty: it is fine)."""
    problems: list[str] = []
    if document.get("permissions") != {}:
        problems.append("top-level permissions must be {} (jobs ask for what they need)")
    problems += _concurrency_problems(name, document)
    for job_name, job in document.get("jobs", {}).items():
        where = f"{name}:{job_name}"
        steps = job.get("steps", [])
        problems += _permission_problems(where, (name, job_name), job.get("permissions"), steps)
        if len(steps) != 2:
            problems.append(f"{where}: expected checkout + one Dagger step, got {len(steps)}")
            continue
        problems += _checkout_problems(where, steps[0])
        problems += _action_problems(where, steps[1])
    return problems


def _concurrency_problems(name: str, document: dict[str, Any]) -> list[str]:
    cancel = document.get("concurrency", {}).get("cancel-in-progress", False)
    if cancel is False:
        return []
    if cancel == PR_ONLY and "pull_request" in document.get("on", {}):
        return []
    return [f"{name}: cancel-in-progress only for pull requests ({PR_ONLY}), got {cancel!r}"]


def _function(call: str) -> str:
    """The module function a `call` text runs (its first word that names one), or ""."""
    words = [w.replace("-", "_") for w in shlex.split(call)]
    return next((w for w in words if w in FUNCTIONS and w), "")


def _call(step: dict[str, Any]) -> str:
    """The `call` text of a Dagger step, on one line as the action runs it."""
    return " ".join(str(step.get("with", {}).get("call", "")).split())


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
    signs = any(SIGNING in _call(s) for s in steps)
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
    if step.get("env"):
        problems.append(f"{where}: checkout holds no environment")
    return problems


def _action_problems(where: str, step: dict[str, Any]) -> list[str]:
    uses = str(step.get("uses", ""))
    inputs = step.get("with", {})
    call = _call(step)
    problems = []
    if not (uses.startswith("dagger/dagger-for-github@") and SHA_PIN.match(uses)):
        problems.append(f"{where}: second step must be dagger-for-github pinned by SHA: {uses!r}")
    if "run" in step:
        problems.append(f"{where}: no shell steps: the pipeline is the Dagger module")
    if inputs.get("cloud-token") != CLOUD_TOKEN:
        problems.append(f"{where}: the engine cache: cloud-token: {CLOUD_TOKEN}")
    if str(inputs.get("version")) != ENGINE:
        problems.append(f"{where}: Dagger version {inputs.get('version')!r} != engine {ENGINE}")
    runs = {k: v for k, v in inputs.items() if k in ("call", "verb", "check", "args", "shell")}
    if runs != {"verb": "check"} and set(runs) != {"call"}:
        problems.append(f"{where}: the Dagger step runs `dagger check` or one `call`: {runs}")
    # The action pastes `call` into a bash script: anything but one call would run too.
    if re.search(r"[;&|`'\n]|\$\(", call):
        problems.append(f"{where}: `call` is one function call and nothing else")
    if "${{" in call:
        problems.append(f"{where}: expressions in `call` are script injection; pass via env")
    for key, value in step.get("env", {}).items():
        if "secrets." in str(value) and f"env://{key}" not in call:
            problems.append(f"{where}: secret {key} must reach Dagger only as env://{key}")
    function = _function(call)
    if "models" in FUNCTIONS.get(function, FUNCTIONS[""]).arguments and (
        MODELS_ARG not in call or step.get("env", {}).get("MODELS_DIR") != MODELS_ENV
    ):
        problems.append(
            f"{where}: {function} builds images: {MODELS_ARG} with MODELS_DIR: {MODELS_ENV}"
        )
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
    return _call(job["steps"][1])


def test_ci_runs_the_module_checks_in_one_engine_and_publishes_main_as_edge() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    check = ci["jobs"]["check"]
    assert check["steps"][1]["with"] == {
        "version": ENGINE,
        "verb": "check",
        "cloud-token": CLOUD_TOKEN,
    }
    assert {n for n, f in module_functions(OnnxServing).items() if f.check} == {
        "lint",
        "test",
        "scan",
    }
    edge = ci["jobs"]["edge"]
    assert edge["needs"] == "check"
    assert edge["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert "publish --edge" in _run(edge) and '--revision "$REVISION"' in _run(edge)
    assert edge["steps"][1]["env"]["REVISION"] == "${{ github.sha }}"
    _assert_created_is_the_commit_time(edge)
    # Only a pull request's newer push cancels a run: main's edge release is never cut short.
    assert ci["concurrency"]["cancel-in-progress"] == PR_ONLY


def test_release_publishes_the_pushed_tag_with_the_token_as_a_secret() -> None:
    release = load(WORKFLOWS / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["jobs"]["check"]["steps"][1]["with"] == {
        "version": ENGINE,
        "verb": "check",
        "cloud-token": CLOUD_TOKEN,
    }
    job = release["jobs"]["publish"]
    assert job["needs"] == "check"  # nothing is published unless the checks pass
    assert job["steps"][0]["with"]["fetch-depth"] == 0  # the release tags: backports
    run = _run(job)
    assert 'publish --tag "$RELEASE_TAG"' in run
    assert "--password env://REGISTRY_TOKEN" in run and SIGNING in run
    env = job["steps"][1]["env"]
    assert env["RELEASE_TAG"] == "${{ github.ref_name }}"
    assert env["REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert release["concurrency"]["cancel-in-progress"] is False  # a release is never cut short
    _assert_created_is_the_commit_time(job)


def _assert_created_is_the_commit_time(job: dict[str, Any]) -> None:
    """The `created` label is the commit's time, not the build's: two builds of one commit
    label it alike."""
    assert '--created "$CREATED"' in _run(job)
    assert job["steps"][1]["env"]["CREATED"] == "${{ github.event.head_commit.timestamp }}"
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}


def test_only_a_pull_request_run_is_ever_cancelled() -> None:
    cancels = {p.name: load(p).get("concurrency", {}).get("cancel-in-progress") for p in _files()}
    assert cancels == {"ci.yml": PR_ONLY, "release.yml": False, "scan.yml": False}


def test_every_call_that_builds_images_reads_the_models_variable() -> None:
    builds = {
        (p.name, name): _run(job)
        for p in _files()
        for name, job in load(p)["jobs"].items()
        if "models" in FUNCTIONS.get(_function(_run(job)), FUNCTIONS[""]).arguments
    }
    assert set(builds) == {("ci.yml", "edge"), ("release.yml", "publish")}
    for (name, job_name), call in builds.items():
        step = load(WORKFLOWS / name)["jobs"][job_name]["steps"][1]
        assert MODELS_ARG in call and step["env"]["MODELS_DIR"] == MODELS_ENV


def test_scan_pulls_and_scans_what_is_published_weekly() -> None:
    scan = load(WORKFLOWS / "scan.yml")
    assert "schedule" in scan["on"]
    [job] = scan["jobs"].values()
    assert _run(job).startswith("scan-published ")
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
    "no engine cache": lambda d: _step(d, 1)["with"].pop("cloud-token"),
    "another shell step": lambda d: _job(d)["steps"].append({"run": "echo hi"}),
    "the CLI installed in a step of its own": lambda d: _job(d)["steps"].insert(
        1, {"uses": _step(d, 1)["uses"], "with": {"version": ENGINE}}
    ),
    "a script beside the call": lambda d: _call_is(d, "x; curl x | sh"),
    "a command substitution": lambda d: _call_is(d, 'publish --tag "$(cat tag)"'),
    "an expression in the call": lambda d: _call_is(d, "publish --tag ${{ github.ref_name }}"),
    "a secret passed as text": lambda d: _call_is(
        d, 'publish --tag "$RELEASE_TAG" --password "$REGISTRY_TOKEN"'
    ),
    "the token in the checkout step": lambda d: _step(d, 0).update(
        env={"REGISTRY_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    ),
    "a call and a check in one step": lambda d: _step(d, 1)["with"].update(verb="check"),
    "a release cancelled by the next one": lambda d: d["concurrency"].update(
        {"cancel-in-progress": True}
    ),
    "a release cancelled as if it were a pull request": lambda d: d["concurrency"].update(
        {"cancel-in-progress": PR_ONLY}
    ),
    "publish without the models": lambda d: _call_is(d, _call(_step(d, 1)).replace(MODELS_ARG, "")),
    "the models named in the call, not by the variable": lambda d: _step(d, 1)["env"].update(
        MODELS_DIR="models"
    ),
}


def _call_is(document: dict[str, Any], call: str) -> None:
    _step(document, 1)["with"]["call"] = call


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
