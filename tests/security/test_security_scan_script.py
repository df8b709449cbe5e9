"""scripts/scan.sh (onnx_serving.local_scan): one command per scan, exit 0 clean, 1 findings,
2 bad usage or input, or a scanner that failed to run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onnx_serving.variants import Variant

from .conftest import REPO


def scan(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "VENV": str(Path(sys.executable).parent.parent),
        "SCAN_OUT": str(tmp_path),
        "TRIVY_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    return subprocess.run(
        [str(REPO / "scripts/scan.sh"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("kind", ["fs", "dockerfiles", "workflows"])
def test_repo_scans_pass(kind: str, tmp_path: Path) -> None:
    done = scan(tmp_path, kind)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fs_scan_runs_the_gate_on_a_report(tmp_path: Path) -> None:
    done = scan(tmp_path, "fs", SEVERITY="LOW,MEDIUM,HIGH,CRITICAL")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trivy gate PASS" in done.stdout and "LOW,MEDIUM,HIGH,CRITICAL" in done.stdout
    assert (tmp_path / "repo.trivy.json").is_file()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["bogus"], {}, "One command per security scan"),
        ([], {}, "One command per security scan"),
        (["image"], {}, "One command per security scan"),
        (["image", "a:1", "b:1"], {}, "One command per security scan"),
        (["sbom", "a:1", "out.json", "more"], {}, "One command per security scan"),
        (["fs"], {"SEVERITY": "BOGUS"}, "'BOGUS'"),
        (["image", "security-no-such-image:0"], {}, "no local image 'security-no-such-image:0'"),
    ],
)
def test_bad_usage_is_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    done = scan(tmp_path, *args, **env)
    assert done.returncode == 2
    assert message in done.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = scan(tmp_path, "--help")
    assert done.returncode == 0
    for command in ("fs", "image TAG", "sbom TAG [OUT]", "dockerfiles", "workflows"):
        assert f"scripts/scan.sh {command} " in done.stdout


def test_a_missing_virtualenv_is_exit_2(tmp_path: Path) -> None:
    done = scan(tmp_path, "fs", VENV=str(tmp_path / "no-venv"))
    assert done.returncode == 2
    assert "run ./scripts/dev_env.sh first" in done.stderr


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_image_and_sbom_commands(tmp_path: Path, built_image: Callable[[Variant], str]) -> None:
    tag = built_image(Variant.cpu)
    scanned = scan(tmp_path, "image", tag)
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    assert "trivy gate PASS" in scanned.stdout
    sbom = tmp_path / "optimized.cdx.json"
    described = scan(tmp_path, "sbom", tag, str(sbom))
    assert described.returncode == 0, described.stdout + described.stderr
    assert '"bomFormat": "CycloneDX"' in sbom.read_text()
    assert not list(tmp_path.glob("*.tar"))  # the saved tarballs are cleaned up


def stand_in_venv(tmp_path: Path, **scripts: str) -> Path:
    """A venv running this interpreter, whose scanners are the given shell scripts (the
    others: this venv's own)."""
    venv = tmp_path / "stand-in-venv"
    (venv / "bin").mkdir(parents=True)
    tools = {"python": f'exec {sys.executable} "$@"', **scripts}
    for name, body in tools.items():
        (venv / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    for name in {"trivy", "hadolint", "zizmor"} - set(tools):
        (venv / "bin" / name).symlink_to(Path(sys.executable).parent / name)
    return venv


def fake_docker(tmp_path: Path) -> Path:
    """A docker client that has every image and `docker save`s an empty tarball."""
    docker = tmp_path / "fake-docker"
    docker.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = save ]; then : > "$3"; fi\n'  # save -o PATH TAG
        "exit 0\n"
    )
    docker.chmod(0o755)
    return docker


@pytest.mark.parametrize(
    ("args", "stale_report"),
    [
        (["fs"], "repo.trivy.json"),
        (["image", "example/img:1"], "example_img_1.trivy.json"),
        (["sbom", "example/img:1"], "example_img_1.cdx.json"),
    ],
)
def test_a_failing_trivy_is_exit_2_and_no_earlier_report_is_judged(
    tmp_path: Path, args: list[str], stale_report: str
) -> None:
    # Trivy runs with --exit-code 0: a non-zero exit is Trivy failing, never a verdict. A
    # passing report (or an SBOM) of an earlier run must not pass for this run's result.
    out = tmp_path / "out"
    out.mkdir()
    (out / stale_report).write_text('{"SchemaVersion": 2, "Results": []}\n')
    venv = stand_in_venv(tmp_path, trivy="echo 'trivy: simulated failure' >&2; exit 1")
    done = scan(out, *args, VENV=str(venv), DOCKER=str(fake_docker(tmp_path)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "scan: trivy failed (exit 1)" in done.stderr, done.stderr
    assert "PASS" not in done.stdout and "written" not in done.stdout
    assert not (out / stale_report).exists()
    assert not list(out.glob("*.tar"))


@pytest.mark.parametrize(
    ("command", "tool", "code", "expected"),
    [
        ("dockerfiles", "hadolint", 1, 1),  # hadolint: 1 on findings
        ("workflows", "zizmor", 14, 1),  # zizmor: 10 + the highest severity found
        ("workflows", "zizmor", 11, 1),
        ("workflows", "zizmor", 1, 2),  # zizmor could not run
    ],
)
def test_linter_exits_become_findings_or_failure(
    tmp_path: Path, command: str, tool: str, code: int, expected: int
) -> None:
    venv = stand_in_venv(tmp_path, **{tool: f"exit {code}"})
    done = scan(tmp_path, command, VENV=str(venv))
    assert done.returncode == expected, done.stdout + done.stderr
    assert "clean" not in done.stdout


def test_the_sbom_is_named_after_the_tag_by_default(tmp_path: Path) -> None:
    # Trivy stood in for: writes a CycloneDX document to its --output.
    writes_sbom = (
        'while [ "$1" != --output ]; do shift; done; '
        'printf \'{"bomFormat": "CycloneDX"}\\n\' > "$2"'
    )
    venv = stand_in_venv(tmp_path, trivy=writes_sbom)
    done = scan(
        tmp_path, "sbom", "ghcr.io/acme/img:1.2", VENV=str(venv), DOCKER=str(fake_docker(tmp_path))
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sbom = tmp_path / "ghcr.io_acme_img_1.2.cdx.json"
    assert done.stdout == f"scan: CycloneDX SBOM of ghcr.io/acme/img:1.2 written to {sbom}\n"
    assert "CycloneDX" in sbom.read_text()
    assert not list(tmp_path.glob("*.tar"))
