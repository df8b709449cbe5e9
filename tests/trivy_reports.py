"""Trivy JSON reports (SchemaVersion 2) for tests of the gate, the scan functions and scan.sh."""

from __future__ import annotations

import json
from typing import Any


def vulnerability(cve: str, severity: str, fixed: str = "") -> dict[str, str]:
    """One finding of a Python package; no `fixed` version means the fix is not out yet."""
    return {
        "VulnerabilityID": cve,
        "PkgName": "examplelib",
        "InstalledVersion": "1.0.0",
        "FixedVersion": fixed,
        "Severity": severity,
        "Title": "example flaw",
    }


def image_report(*vulnerabilities: dict[str, str]) -> dict[str, Any]:
    """A report for the scanned image tarball holding `vulnerabilities`."""
    result = {"Target": "python-pkg", "Class": "lang-pkgs", "Type": "python-pkg"}
    return {
        "SchemaVersion": 2,
        "ArtifactName": "/scan/image.tar",
        "ArtifactType": "container_image",
        "Results": [{**result, "Vulnerabilities": list(vulnerabilities)}],
    }


def report_text(*vulnerabilities: dict[str, str]) -> str:
    """`image_report` as the file Trivy writes."""
    return json.dumps(image_report(*vulnerabilities))
