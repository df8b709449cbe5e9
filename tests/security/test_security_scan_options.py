"""scripts/scan.sh's environment options (onnx_serving.local_scan): SEVERITY, IGNORE_UNFIXED,
SCANNERS and SCAN_OUT reach the Trivy command and the gate; exit 0 pass, 1 findings, 2 bad
usage or input, decided before any scan runs.

Trivy is stood in for where a vulnerability report is needed (no vulnerability DB offline): a
script that records its command line and writes a given report to its `--output`; the gate
that judges it is the real one. SCANNERS is also checked with the real Trivy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onnx_serving import gate, trivy
from tests.trivy_reports import image_report, vulnerability

from .conftest import REPO

IMAGE = "example/img:1"
IMAGE_REPORT = "example_img_1.trivy.json"  # TAG with / : @ as _


def run_scan(tmp_path: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """scripts/scan.sh with SCAN_OUT=tmp_path/out by default; an env value of None unsets it."""
    environ: dict[str, str | None] = {
        **os.environ,
        "VENV": str(Path(sys.executable).parent.parent),
        "SCAN_OUT": str(tmp_path / "out"),
        "TRIVY_CACHE_DIR": str(tmp_path / "cache"),
        "SEVERITY": None,
        "IGNORE_UNFIXED": None,
        "SCANNERS": None,
        **env,
    }
    return subprocess.run(
        [str(REPO / "scripts/scan.sh"), *args],
        env={k: v for k, v in environ.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class StandIn:
    """A virtualenv whose trivy records its arguments and writes `report` to its --output,
    and a docker client that has every image."""

    def __init__(self, tmp_path: Path, report: dict[str, Any]) -> None:
        self.args_file = tmp_path / "trivy.args"
        canned = tmp_path / "canned.json"
        canned.write_text(json.dumps(report))
        self.venv = tmp_path / "stand-in-venv"
        bin_dir = self.venv / "bin"
        bin_dir.mkdir(parents=True)
        scripts = {
            "python": f'exec {sys.executable} "$@"',
            "trivy": (
                f'printf "%s\\n" "$@" > {self.args_file}\n'
                'while [ "$1" != --output ]; do shift; done\n'
                f'cp {canned} "$2"'
            ),
        }
        for name, body in scripts.items():
            (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
            (bin_dir / name).chmod(0o755)
        self.docker = tmp_path / "fake-docker"
        self.docker.write_text('#!/bin/sh\nif [ "$1" = save ]; then : > "$3"; fi\nexit 0\n')
        self.docker.chmod(0o755)

    def env(self, **more: str | None) -> dict[str, str | None]:
        return {"VENV": str(self.venv), "DOCKER": str(self.docker), **more}

    def trivy_args(self) -> list[str]:
        """The command line trivy ran with (fails if it never ran)."""
        return self.args_file.read_text().splitlines()

    def ran(self) -> bool:
        return self.args_file.exists()


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


FIXED_HIGH = image_report(vulnerability("CVE-2026-7001", "HIGH", "1.0.1"))
UNFIXED_CRITICAL = image_report(vulnerability("CVE-2026-7002", "CRITICAL", ""))
FIXED_MEDIUM = image_report(vulnerability("CVE-2026-7003", "MEDIUM", "1.0.1"))


@pytest.mark.parametrize(
    ("args", "report"), [(["fs"], "repo.trivy.json"), (["image", IMAGE], IMAGE_REPORT)]
)
def test_findings_are_exit_1_and_the_report_is_in_scan_out(
    tmp_path: Path, args: list[str], report: str
) -> None:
    stand_in = StandIn(tmp_path, FIXED_HIGH)
    done = run_scan(tmp_path, *args, **stand_in.env())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "trivy gate FAIL" in done.stdout and "CVE-2026-7001" in done.stdout
    out = tmp_path / "out"
    assert _value(stand_in.trivy_args(), "--output") == str(out / report)
    assert json.loads((out / report).read_text()) == FIXED_HIGH  # the report judged is kept


def test_without_scan_out_reports_go_to_tmpdir(tmp_path: Path) -> None:
    stand_in = StandIn(tmp_path, image_report())
    done = run_scan(tmp_path, "image", IMAGE, **stand_in.env(SCAN_OUT=None, TMPDIR=str(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    expected = tmp_path / "onnx-serving-scan" / IMAGE_REPORT
    assert _value(stand_in.trivy_args(), "--output") == str(expected)
    assert expected.is_file()


@pytest.mark.parametrize(
    ("value", "code"), [(None, 1), ("", 1), ("0", 1), ("1", 0)], ids=["unset", "empty", "0", "1"]
)
def test_ignore_unfixed_1_lets_only_unfixed_vulnerabilities_pass(
    tmp_path: Path, value: str | None, code: int
) -> None:
    stand_in = StandIn(tmp_path, UNFIXED_CRITICAL)
    done = run_scan(tmp_path, "image", IMAGE, **stand_in.env(IGNORE_UNFIXED=value))
    assert done.returncode == code, done.stdout + done.stderr
    if code == 0:
        assert "1 unfixed (ignore-unfixed)" in done.stdout
    else:
        assert "CVE-2026-7002" in done.stdout


def test_ignore_unfixed_does_not_pass_a_vulnerability_with_a_fix(tmp_path: Path) -> None:
    stand_in = StandIn(tmp_path, FIXED_HIGH)
    done = run_scan(tmp_path, "image", IMAGE, **stand_in.env(IGNORE_UNFIXED="1"))
    assert done.returncode == 1, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("severity", "code"),
    [(None, 0), ("MEDIUM,HIGH,CRITICAL", 1), ("medium,high", 1), ("CRITICAL", 0)],
)
def test_severity_is_the_list_that_fails(tmp_path: Path, severity: str | None, code: int) -> None:
    stand_in = StandIn(tmp_path, FIXED_MEDIUM)
    done = run_scan(tmp_path, "image", IMAGE, **stand_in.env(SEVERITY=severity))
    assert done.returncode == code, done.stdout + done.stderr
    threshold = severity.upper() if severity else gate.DEFAULT_SEVERITIES
    assert f" at {threshold}: " in done.stdout


@pytest.mark.parametrize("command", [["fs"], ["image", IMAGE]])
@pytest.mark.parametrize(
    ("scanners", "expected"),
    [
        (None, ",".join(trivy.OFFLINE_SCANNERS)),
        ("vuln,secret", "vuln,secret"),
        ("secret", "secret"),
    ],
)
def test_scanners_reach_trivy(
    tmp_path: Path, command: list[str], scanners: str | None, expected: str
) -> None:
    stand_in = StandIn(tmp_path, image_report())
    done = run_scan(tmp_path, *command, **stand_in.env(SCANNERS=scanners))
    assert done.returncode == 0, done.stdout + done.stderr
    args = stand_in.trivy_args()
    assert _value(args, "--scanners") == expected
    assert _value(args, "--cache-dir") == str(tmp_path / "cache")  # TRIVY_CACHE_DIR


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SEVERITY": "HIGH,SEVERE"}, "'SEVERE'"),
        ({"SEVERITY": ","}, "(none)"),
    ],
)
@pytest.mark.parametrize("command", [["fs"], ["image", IMAGE]])
def test_a_bad_threshold_is_exit_2_before_trivy_runs(
    tmp_path: Path, command: list[str], env: dict[str, str], named: str
) -> None:
    stand_in = StandIn(tmp_path, image_report())
    done = run_scan(tmp_path, *command, **stand_in.env(**env))
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert not stand_in.ran()


def _config_results(report: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads(report.read_text()).get("Results") or []
    return [r for r in results if r.get("Class") == "config"]


def test_scanners_choose_what_the_real_trivy_checks(tmp_path: Path) -> None:
    # The repo scan with the defaults checks the Dockerfiles (misconfig); with SCANNERS=secret
    # it does not.
    default, secret_only = tmp_path / "default", tmp_path / "secret"
    done = run_scan(tmp_path, "fs", SCAN_OUT=str(default))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _config_results(default / "repo.trivy.json")
    done = run_scan(tmp_path, "fs", SCAN_OUT=str(secret_only), SCANNERS="secret")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _config_results(secret_only / "repo.trivy.json") == []


@pytest.mark.parametrize("args", [["image", ""], ["sbom", ""], ["sbom", IMAGE, ""]])
def test_an_empty_argument_is_bad_usage(tmp_path: Path, args: list[str]) -> None:
    stand_in = StandIn(tmp_path, image_report())  # a docker that has every image, even ""
    done = run_scan(tmp_path, *args, **stand_in.env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "One command per security scan" in done.stderr  # the usage
    assert not stand_in.ran()
