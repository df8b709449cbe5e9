"""scripts/scan.sh: one command per scan, exit 0 clean, 1 findings, 2 bad usage or input."""

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
        (["image"], {}, "One command per security scan"),
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


def broken_helper_venv(tmp_path: Path) -> Path:
    """A venv whose python fails `python -c` (the script's command-line helper) and runs
    everything else (the gate) with this interpreter; the scanners are this venv's."""
    venv = tmp_path / "broken-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin/python"
    python.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -c ]; then echo "helper: simulated failure" >&2; exit 3; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    for tool in ("trivy", "hadolint", "zizmor"):
        (venv / "bin" / tool).symlink_to(Path(sys.executable).parent / tool)
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
        (["sbom", "example/img:1"], None),
        (["dockerfiles"], None),
        (["workflows"], None),
    ],
)
def test_a_failing_command_line_helper_is_exit_2(
    tmp_path: Path, args: list[str], stale_report: str | None
) -> None:
    # A passing report from an earlier run must not be gated again as this run's result.
    out = tmp_path / "out"
    out.mkdir()
    if stale_report:
        (out / stale_report).write_text('{"SchemaVersion": 2, "Results": []}\n')
    done = scan(
        out,
        *args,
        VENV=str(broken_helper_venv(tmp_path)),
        DOCKER=str(fake_docker(tmp_path)),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "scan: could not build the command line" in done.stderr, done.stderr
    assert "PASS" not in done.stdout and "written" not in done.stdout
    if stale_report:
        assert not (out / stale_report).exists()
