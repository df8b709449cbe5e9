"""The severity gate (ci/src/onnx_serving/gate.py) on reports in Trivy's real JSON format.

Secrets, misconfigurations and licenses: a report Trivy 0.76.0 really produced here
(`planted_report`). Vulnerabilities: no vulnerability database is reachable from this machine
(it is only distributed through OCI registries), so the vulnerability report below is written
by hand in the same schema (SchemaVersion 2, Results[].Vulnerabilities[] with Trivy's field
names) - it exercises the gate's logic, not Trivy's detection.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from onnx_serving import trivy
from onnx_serving.gate import (
    SEVERITIES,
    GateInputError,
    IgnoreEntry,
    evaluate,
    load_ignore_file,
    main,
    parse_ignore_entries,
    severities_at_least,
)

from .conftest import PLANTED_PACKAGES

TODAY = dt.date(2026, 11, 28)

# What Trivy 0.76.0 finds in the planted tree at HIGH and CRITICAL (kind, id).
PLANTED_HIGH_CRITICAL = {
    ("secrets", "aws-access-key-id"),
    ("secrets", "aws-secret-access-key"),
    ("licenses", "AGPL-3.0-only"),
    ("misconfigurations", "DS-0002"),
    ("misconfigurations", "DS-0029"),
    ("licenses", "GPL-3.0-only"),
}


def failing(verdict: Any) -> set[tuple[str, str]]:
    return {(f.kind, f.id) for f in verdict.failing}


def ignore_all(
    report: dict[str, Any], expired_at: dt.date, **extra: Any
) -> dict[str, list[dict[str, Any]]]:
    """An ignore file (as parsed YAML) with one entry per HIGH/CRITICAL planted finding."""
    data: dict[str, list[dict[str, Any]]] = {}
    for kind, ident in sorted(PLANTED_HIGH_CRITICAL):
        entry = {"id": ident, "statement": "planted by the test", "expired_at": expired_at}
        data.setdefault(kind, []).append(entry | extra)
    return data


def test_report_is_trivys_own(planted_report: dict[str, Any]) -> None:
    assert planted_report["SchemaVersion"] == 2
    assert planted_report["Trivy"]["Version"] == trivy.TRIVY_VERSION


def test_planted_findings_fail_the_default_gate(planted_report: dict[str, Any]) -> None:
    verdict = evaluate(planted_report, today=TODAY)
    assert not verdict.passed
    assert failing(verdict) == PLANTED_HIGH_CRITICAL
    assert verdict.counts() == {"CRITICAL": 3, "HIGH": 3}
    text = verdict.report()
    assert text.startswith("trivy gate FAIL")
    assert "aws-access-key-id" in text and "settings.py" in text
    # Trivy masks secrets in its report; the gate must not un-mask them.
    assert "2E0A8F3B244C9986" not in json.dumps(planted_report) + text


def test_threshold_decides_what_counts(planted_report: dict[str, Any]) -> None:
    critical = evaluate(planted_report, severities="CRITICAL", today=TODAY)
    assert {kind for kind, _ in failing(critical)} == {"secrets", "licenses"}
    assert ("misconfigurations", "DS-0002") not in failing(critical)
    assert critical.below_threshold > 0

    everything = evaluate(planted_report, severities=severities_at_least("LOW"), today=TODAY)
    assert failing(everything) > PLANTED_HIGH_CRITICAL  # adds the MEDIUM/LOW misconfigs
    assert ("misconfigurations", "DS-0001") in failing(everything)  # ':latest' tag, MEDIUM
    assert everything.below_threshold == 0


def test_ignore_entries_pass_the_gate_until_they_expire(planted_report: dict[str, Any]) -> None:
    for expiry in (TODAY, TODAY + dt.timedelta(days=30)):  # valid through the expiry date
        ignores = parse_ignore_entries(ignore_all(planted_report, expiry))
        verdict = evaluate(planted_report, ignores=ignores, today=TODAY)
        assert verdict.passed, verdict.report()
        assert {(f.kind, f.id) for f, _ in verdict.ignored} == PLANTED_HIGH_CRITICAL
        assert "planted by the test" in verdict.report()

    expired = parse_ignore_entries(ignore_all(planted_report, TODAY - dt.timedelta(days=1)))
    verdict = evaluate(planted_report, ignores=expired, today=TODAY)
    assert not verdict.passed
    assert failing(verdict) == PLANTED_HIGH_CRITICAL
    assert len(verdict.expired) == len(PLANTED_HIGH_CRITICAL)
    assert "EXPIRED ignore aws-access-key-id" in verdict.report()


def test_ignore_paths_narrow_an_entry(planted_report: dict[str, Any]) -> None:
    later = TODAY + dt.timedelta(days=30)
    elsewhere = parse_ignore_entries(ignore_all(planted_report, later, paths=["other/*"]))
    assert failing(evaluate(planted_report, ignores=elsewhere, today=TODAY)) == (
        PLANTED_HIGH_CRITICAL
    )
    here = parse_ignore_entries(ignore_all(planted_report, later, paths=["*"]))
    assert evaluate(planted_report, ignores=here, today=TODAY).passed


def test_unused_and_wrong_kind_entries_ignore_nothing(planted_report: dict[str, Any]) -> None:
    # The right id under the wrong section must not match.
    entries = parse_ignore_entries(
        {"vulnerabilities": [{"id": "DS-0002", "statement": "x", "expired_at": "2099-01-01"}]}
    )
    verdict = evaluate(planted_report, ignores=entries, today=TODAY)
    assert ("misconfigurations", "DS-0002") in failing(verdict)
    assert verdict.unused == entries


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"secrets": [{"id": "aws-access-key-id", "expired_at": "2027-01-01"}]}, "statement"),
        ({"secrets": [{"id": "aws-access-key-id", "statement": "ok"}]}, "expired_at"),
        (
            {"secrets": [{"id": "aws-access-key-id", "statement": "ok", "expired_at": "soon"}]},
            "'soon'",
        ),
        ({"secrets": [{"statement": "ok", "expired_at": "2027-01-01"}]}, "'id'"),
        ({"cves": []}, "unknown section"),
        ({"secrets": {"id": "x"}}, "must be a list"),
        (["secrets"], "expected a mapping"),
    ],
)
def test_bad_ignore_entries_are_rejected(data: object, message: str) -> None:
    with pytest.raises(GateInputError, match=message) as err:
        parse_ignore_entries(data, source="ignore.yaml")
    if isinstance(data, dict) and "secrets" in data and isinstance(data["secrets"], list):
        assert "aws-access-key-id" in str(err.value) or "'id'" in str(err.value)


# Hand-written in Trivy's schema (see the module docstring): one fixed HIGH, one unfixed
# CRITICAL (Debian status "affected", no fixed version), one fixed MEDIUM in a Python package.
VULN_REPORT: dict[str, Any] = {
    "SchemaVersion": 2,
    "Trivy": {"Version": trivy.TRIVY_VERSION},
    "ArtifactName": "onnx-serving:test",
    "ArtifactType": "container_image",
    "Results": [
        {
            "Target": "onnx-serving:test (debian 12.8)",
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2026-0001",
                    "PkgID": "libssl3@3.0.15-1~deb12u1",
                    "PkgName": "libssl3",
                    "InstalledVersion": "3.0.15-1~deb12u1",
                    "FixedVersion": "3.0.16-1~deb12u1",
                    "Status": "fixed",
                    "Severity": "HIGH",
                    "Title": "openssl: example fixed flaw",
                },
                {
                    "VulnerabilityID": "CVE-2026-0002",
                    "PkgID": "zlib1g@1:1.2.13.dfsg-1",
                    "PkgName": "zlib1g",
                    "InstalledVersion": "1:1.2.13.dfsg-1",
                    "Status": "affected",
                    "Severity": "CRITICAL",
                    "Title": "zlib: example unfixed flaw",
                },
            ],
        },
        {
            "Target": "Python",
            "Class": "lang-pkgs",
            "Type": "python-pkg",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "GHSA-aaaa-bbbb-cccc",
                    "PkgName": "starlette",
                    "PkgPath": "opt/venv/lib/python3.11/site-packages/starlette-1.10.0.dist-info/"
                    "METADATA",
                    "InstalledVersion": "1.10.0",
                    "FixedVersion": "1.10.1",
                    "Status": "fixed",
                    "Severity": "MEDIUM",
                    "Title": "starlette: example medium flaw",
                }
            ],
        },
    ],
}


def test_vulnerabilities_threshold_and_ignore_unfixed() -> None:
    default = evaluate(VULN_REPORT, today=TODAY)
    assert failing(default) == {
        ("vulnerabilities", "CVE-2026-0001"),
        ("vulnerabilities", "CVE-2026-0002"),
    }
    assert default.below_threshold == 1  # the MEDIUM one

    unfixed_skipped = evaluate(VULN_REPORT, ignore_unfixed=True, today=TODAY)
    assert failing(unfixed_skipped) == {("vulnerabilities", "CVE-2026-0001")}
    assert unfixed_skipped.unfixed_skipped == 1

    medium_up = evaluate(VULN_REPORT, severities="MEDIUM,HIGH,CRITICAL", today=TODAY)
    assert ("vulnerabilities", "GHSA-aaaa-bbbb-cccc") in failing(medium_up)

    assert evaluate(VULN_REPORT, severities="CRITICAL", ignore_unfixed=True, today=TODAY).passed


def test_vulnerability_ignore_entry_with_package_path() -> None:
    entry = IgnoreEntry(
        kind="vulnerabilities",
        id="CVE-2026-0001",
        statement="TLS is terminated by the ingress, libssl is unused",
        expired_at=TODAY + dt.timedelta(days=14),
    )
    verdict = evaluate(VULN_REPORT, ignore_unfixed=True, ignores=[entry], today=TODAY)
    assert verdict.passed, verdict.report()
    later = TODAY + dt.timedelta(days=15)
    assert not evaluate(VULN_REPORT, ignore_unfixed=True, ignores=[entry], today=later).passed

    pkg = parse_ignore_entries(
        {
            "vulnerabilities": [
                {
                    "id": "GHSA-aaaa-bbbb-cccc",
                    "paths": ["opt/venv/lib/python3.11/site-packages/starlette-*"],
                    "statement": "upgrade pending",
                    "expired_at": "2027-01-01",
                }
            ]
        }
    )
    assert evaluate(VULN_REPORT, severities="MEDIUM", ignores=pkg, today=TODAY).passed


def test_not_a_report_or_bad_threshold_is_a_clear_error() -> None:
    with pytest.raises(GateInputError, match="SchemaVersion"):
        evaluate({"Results": []}, today=TODAY)
    with pytest.raises(GateInputError, match="'SEVERE'"):
        evaluate(VULN_REPORT, severities="HIGH,SEVERE", today=TODAY)
    with pytest.raises(GateInputError, match="'BAD'"):
        severities_at_least("BAD")
    broken = copy.deepcopy(VULN_REPORT)
    broken["Results"][0]["Vulnerabilities"][0]["Severity"] = "DIRE"
    with pytest.raises(GateInputError, match="'DIRE'"):
        evaluate(broken, today=TODAY)


def misconfig_report(*checks: dict[str, Any]) -> dict[str, Any]:
    """A config scan's report in Trivy's schema, with the given Misconfigurations[]."""
    return {
        "SchemaVersion": 2,
        "ArtifactName": ".",
        "ArtifactType": "filesystem",
        "Results": [
            {
                "Target": "Dockerfile",
                "Class": "config",
                "Type": "dockerfile",
                "Misconfigurations": list(checks),
            }
        ],
    }


def test_a_misconfiguration_without_status_fails_the_gate() -> None:
    """Only an explicit non-FAIL status (PASS, with --include-non-failures) is a passed check,
    and a passed check hides nothing after it."""
    report = misconfig_report(
        {"ID": "DS-0001", "Status": "PASS", "Severity": "HIGH", "Title": "':latest' tag"},
        {"ID": "DS-0002", "AVDID": "AVD-DS-0002", "Severity": "HIGH", "Title": "root user"},
        {"ID": "DS-0029", "Status": "FAIL", "Severity": "HIGH", "Title": "no --no-install"},
    )
    verdict = evaluate(report, today=TODAY)
    assert failing(verdict) == {("misconfigurations", "DS-0002"), ("misconfigurations", "DS-0029")}
    assert "fail    HIGH misconfiguration DS-0002 in Dockerfile: root user" in verdict.report()


# Every kind of finding and every way the gate treats one, in Trivy's schema: the report it
# prints is what a failed pipeline shows, so its every line is checked.
MIXED_REPORT: dict[str, Any] = {
    "SchemaVersion": 2,
    "ArtifactName": "onnx-serving:mixed",
    "Results": [
        {
            "Target": "Dockerfile",
            "Misconfigurations": [
                {"ID": "DS-0001", "Status": "PASS", "Severity": "HIGH", "Title": "passed"},
                {"ID": "DS-0002", "AVDID": "AVD-DS-0002", "Severity": "HIGH", "Title": "root"},
                {"ID": "DS-0029", "Status": "FAIL", "Severity": "LOW", "Title": "low"},
            ],
        },
        {
            "Target": "img (debian 12.8)",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2026-1",
                    "PkgName": "libssl3",
                    "InstalledVersion": "3.0.15",
                    "FixedVersion": "3.0.16",  # fixed, though no Status says so
                    "Severity": "CRITICAL",
                    "Title": "fixed in 3.0.16",
                },
                {
                    "VulnerabilityID": "CVE-2026-2",
                    "PkgName": "zlib1g",
                    "InstalledVersion": "1.2",
                    "Status": "fixed",  # fixed, though no FixedVersion is given
                    "Severity": "HIGH",
                    "Title": "fixed upstream",
                },
                {
                    "VulnerabilityID": "CVE-2026-3",
                    "PkgName": "bash",
                    "InstalledVersion": "5.2",
                    "Status": "affected",
                    "Severity": "HIGH",
                    "Title": "no fix yet",
                },
                {"VulnerabilityID": "CVE-2026-4", "PkgName": "tar", "Severity": "MEDIUM"},
            ],
        },
        {
            "Target": "Python",
            "Licenses": [
                {
                    "Name": "GPL-3.0-only",
                    "PkgName": "gplthing",
                    "FilePath": "venv/lib/gplthing-1.0.dist-info/METADATA",
                    "Severity": "HIGH",
                    "Category": "restricted",
                },
                {
                    "Name": "AGPL-3.0-only",
                    "FilePath": "node_modules/x/package.json",
                    "Severity": "CRITICAL",
                    "Category": "forbidden",
                },
            ],
            "Secrets": [
                {"RuleID": "aws-access-key-id", "Severity": "CRITICAL", "Title": "AWS key"},
            ],
        },
    ],
}
MIXED_IGNORES = {
    "vulnerabilities": [
        {"id": "CVE-2026-2", "statement": "not reachable", "expired_at": "2026-12-31"},
        {"id": "CVE-2026-1", "statement": "was fine", "expired_at": "2026-11-27"},
        {"id": "CVE-2026-9", "statement": "gone", "expired_at": "2027-01-01"},
    ],
    "licenses": [
        {"id": "GPL-3.0-only", "paths": ["venv/*"], "statement": "ok", "expired_at": "2027-01-01"}
    ],
}
MIXED_VERDICT = """\
trivy gate FAIL: onnx-serving:mixed at HIGH,CRITICAL: 3 CRITICAL, 1 HIGH
  fail    CRITICAL vulnerability CVE-2026-1 in img (debian 12.8): libssl3 3.0.15: fixed in 3.0.16
  fail    CRITICAL secret aws-access-key-id in Python: AWS key
  fail    CRITICAL license AGPL-3.0-only in node_modules/x/package.json: forbidden
  fail    HIGH misconfiguration DS-0002 in Dockerfile: root
  EXPIRED ignore CVE-2026-1 (expired 2026-11-27) no longer hides CRITICAL vulnerability \
CVE-2026-1 in img (debian 12.8): libssl3 3.0.15: fixed in 3.0.16
  ignored HIGH vulnerability CVE-2026-2 in img (debian 12.8): zlib1g 1.2: fixed upstream \
until 2026-12-31: not reachable
  ignored HIGH license GPL-3.0-only in venv/lib/gplthing-1.0.dist-info/METADATA: gplthing \
until 2027-01-01: ok
  unused ignore entries: vulnerabilities/CVE-2026-9
  skipped 2 below threshold, 1 unfixed (ignore-unfixed)"""


def test_the_report_names_every_finding_and_why_it_counts_or_not() -> None:
    verdict = evaluate(
        MIXED_REPORT,
        ignores=parse_ignore_entries(MIXED_IGNORES),
        ignore_unfixed=True,
        today=TODAY,
    )
    assert verdict.report() == MIXED_VERDICT
    assert verdict.counts() == {"CRITICAL": 3, "HIGH": 1}

    # Without ignore-unfixed the unfixed HIGH one fails too.
    strict = evaluate(MIXED_REPORT, ignores=parse_ignore_entries(MIXED_IGNORES), today=TODAY)
    assert ("vulnerabilities", "CVE-2026-3") in failing(strict)
    assert strict.unfixed_skipped == 0


def test_a_clean_report_passes_and_says_so() -> None:
    verdict = evaluate(misconfig_report(), severities=SEVERITIES, today=TODAY)
    assert verdict.passed
    assert verdict.report() == (
        "trivy gate PASS: . at UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL: none\n"
        "  skipped 0 below threshold, 0 unfixed (ignore-unfixed)"
    )
    unnamed = evaluate({"SchemaVersion": 2}, today=TODAY)
    assert unnamed.report().startswith("trivy gate PASS: report at HIGH,CRITICAL: none")


def test_cli_ignore_unfixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(VULN_REPORT))
    assert main([str(report), "--severity", "CRITICAL"]) == 1  # the unfixed CRITICAL one
    assert main([str(report), "--severity", "CRITICAL", "--ignore-unfixed"]) == 0
    assert "1 unfixed (ignore-unfixed)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("secrets: [unclosed", "is not valid YAML")],
)
def test_unreadable_ignore_file_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "ignore.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(GateInputError, match=message) as refused:
        load_ignore_file(path)
    assert repr(str(path)) in str(refused.value)


def test_ignore_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ignore.yaml"
    entry = {"id": "x", "statement": "ok", "expired_at": "2027-01-01", "paths": "some/file"}
    path.write_text(yaml.safe_dump({"secrets": [entry]}))
    with pytest.raises(GateInputError) as refused:
        load_ignore_file(path)
    assert str(refused.value) == (
        f"{path}: secrets[0] (x): 'paths' must be a list of globs, got 'some/file'"
    )


def test_threshold_of_every_severity_is_valid() -> None:
    assert evaluate(VULN_REPORT, severities=SEVERITIES, today=TODAY).below_threshold == 0
    with pytest.raises(GateInputError, match="bad severity threshold"):
        evaluate(VULN_REPORT, severities=[], today=TODAY)


def test_repo_ignore_file_is_valid(repo_root: Path) -> None:
    entries = load_ignore_file(repo_root / ".trivyignore.yaml")
    assert all(e.statement and e.expired_at for e in entries)


def test_cli_exit_codes(
    planted_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(planted_report))
    assert main([str(report), "--today", "2026-11-28"]) == 1
    assert "trivy gate FAIL" in capsys.readouterr().out

    ignore = tmp_path / "ignore.yaml"
    ignore.write_text(yaml.safe_dump(ignore_all(planted_report, dt.date(2026, 12, 31))))
    assert main([str(report), "--ignorefile", str(ignore), "--today", "2026-11-28"]) == 0
    assert "trivy gate PASS" in capsys.readouterr().out
    assert main([str(report), "--ignorefile", str(ignore), "--today", "2027-01-01"]) == 1

    assert main([str(report), "--severity", "HIGHEST"]) == 2
    assert "'HIGHEST'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2


# Debian copyright-file license names -> the SPDX id Trivy 0.76.0 reports (all HIGH).
DEBIAN_COPYLEFT = {
    "GPL-1+": "GPL-1.0-or-later",
    "GPL-2": "GPL-2.0-only",
    "GPL-2+": "GPL-2.0-or-later",
    "GPL-3": "GPL-3.0-only",
    "GPL-3+": "GPL-3.0-or-later",
    "LGPL-2": "LGPL-2.0-only",
    "LGPL-2+": "LGPL-2.0-or-later",
    "LGPL-2.1": "LGPL-2.1-only",
    "LGPL-2.1+": "LGPL-2.1-or-later",
    "LGPL-3": "LGPL-3.0-only",
    "LGPL-3+": "LGPL-3.0-or-later",
}


@pytest.fixture(scope="module")
def debian_rootfs_report(
    tmp_path_factory: pytest.TempPathFactory,
    trivy_bin: str,
    trivy_cache: str,
    run_trivy: Callable[[list[str], Path], dict[str, Any]],
) -> dict[str, Any]:
    """Trivy's report on a Debian-like root filesystem: one dpkg package per copyleft license
    (as in the official python:*-slim-bookworm), plus a GPL Python package."""
    root = tmp_path_factory.mktemp("debian-rootfs")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "etc/debian_version").write_text("12.8\n")
    status = []
    for n, license_name in enumerate(DEBIAN_COPYLEFT):
        package = f"pkg{n}"
        status.append(
            f"Package: {package}\nStatus: install ok installed\nArchitecture: amd64\n"
            f"Version: 1.0-1\nDescription: test package\n"
        )
        doc = root / "usr/share/doc" / package
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            f"Files: *\nCopyright: test\nLicense: {license_name}\n"
        )
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("\n".join(status))
    for relative, text in PLANTED_PACKAGES.items():
        if relative.endswith("METADATA"):  # the GPL Python package
            (root / relative).parent.mkdir(parents=True)
            (root / relative).write_text(text)
    out = root.parent / "debian-rootfs.json"
    cmd = trivy.fs_scan_command(
        str(root),
        str(out),
        scanners=["license"],
        mode="rootfs",
        trivy=trivy_bin,
        cache_dir=trivy_cache,
    )
    return run_trivy(cmd, out)


def test_repo_ignore_file_accepts_debian_copyleft_only(
    debian_rootfs_report: dict[str, Any], repo_root: Path
) -> None:
    plain = evaluate(debian_rootfs_report, today=TODAY)
    os_licenses = {f.id for f in plain.failing if f.target == "OS Packages"}
    assert os_licenses == set(DEBIAN_COPYLEFT.values())  # Trivy's names, each HIGH

    verdict = evaluate(
        debian_rootfs_report,
        ignores=load_ignore_file(repo_root / ".trivyignore.yaml"),
        today=TODAY,
    )
    assert failing(verdict) == {("licenses", "GPL-3.0-only")}  # the Python package still fails
    assert {f.id for f, _ in verdict.ignored} == set(DEBIAN_COPYLEFT.values())
