"""Trivy on every image tarball (`docker save`, as a registry or `dagger ... as_tarball` sees
it): misconfig + secret + license of the files and of the image config, gated; and a CycloneDX
SBOM of each, whose Python packages are exactly those of the image's hashed lock.

Images come from the shared session fixtures of tests/conftest.py (built once per session).
The vulnerability scanner is not run: no Trivy DB is reachable here (docs/SECURITY.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from onnx_serving import trivy
from onnx_serving.gate import evaluate, load_ignore_file
from onnx_serving.variants import Variant

from .conftest import REPO

# The first test to ask for an image builds it (the GPU one: ~2.5 GB of wheels, cold cache).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

VARIANTS = list(Variant)
# Images that hold exactly their lock (pip removed); the others may hold pip beside it.
EXACTLY_THE_LOCK = (Variant.cpu, Variant.gpu)
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
RUNTIME_PACKAGES = ("onnxruntime", "numpy", "fastapi", "uvicorn", "orjson", "prometheus-client")


@dataclass(frozen=True)
class ImageScan:
    tag: str
    report: dict[str, Any]
    sbom: dict[str, Any]
    python_version: str


@pytest.fixture(scope="module")
def scan_image(
    built_image: Callable[[Variant], str],
    docker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    trivy_bin: str,
    trivy_cache: str,
    run_trivy: Callable[[list[str], Path], dict[str, Any]],
) -> Iterator[Callable[[Variant], ImageScan]]:
    """scan_image(variant): saved once, scanned and SBOM'd, tarball deleted (GPU is ~3.5 GB)."""
    done: dict[Variant, ImageScan] = {}
    workdir = tmp_path_factory.mktemp("image-scans")

    def scan(variant: Variant) -> ImageScan:
        if variant not in done:
            tag = built_image(variant)
            tarball = workdir / f"{variant.value}.tar"
            docker.run("save", "--output", str(tarball), tag, timeout=900)
            try:
                report_path, sbom_path = (
                    workdir / f"{variant.value}.json",
                    workdir / f"{variant.value}.cdx",
                )
                report = run_trivy(
                    trivy.image_scan_command(
                        str(tarball), str(report_path), trivy=trivy_bin, cache_dir=trivy_cache
                    ),
                    report_path,
                )
                sbom = run_trivy(
                    trivy.sbom_command(
                        str(tarball), str(sbom_path), trivy=trivy_bin, cache_dir=trivy_cache
                    ),
                    sbom_path,
                )
            finally:
                tarball.unlink(missing_ok=True)
            python = docker.output(
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "python",
                tag,
                "-c",
                "import platform; print(platform.python_version())",
            )
            done[variant] = ImageScan(tag, report, sbom, python)
        return done[variant]

    yield scan


def locked(lock: str, python_version: str) -> dict[str, str]:
    """{canonical name: version} of a hashed lock, markers evaluated for the image's Python."""
    env = {
        "python_full_version": python_version,
        "python_version": python_version[:4],
        "sys_platform": "linux",
        "platform_system": "Linux",
    }
    pins: dict[str, str] = {}
    for line in (REPO / lock).read_text().splitlines():
        match = LOCK_LINE.match(line)
        if match and (not match[3] or Marker(match[3]).evaluate(env)):
            pins[canonicalize_name(match[1])] = match[2]
    assert pins, f"no pins parsed from {lock}"
    return pins


def sbom_python_packages(sbom: dict[str, Any]) -> dict[str, str]:
    return {
        canonicalize_name(c["name"]): c["version"]
        for c in sbom.get("components", [])
        if str(c.get("purl", "")).startswith("pkg:pypi/")
    }


# Every image that is shipped or run passes the gate; the naive baseline is only measured.
GATED = [v for v in VARIANTS if v is not Variant.basic]


@pytest.mark.parametrize("variant", GATED)
def test_image_passes_the_gate(
    variant: Variant, scan_image: Callable[[Variant], ImageScan]
) -> None:
    scanned = scan_image(variant)
    report = scanned.report
    assert report["ArtifactType"] == "container_image"
    assert report["Metadata"]["OS"]["Family"] == "debian"
    classes = {r["Class"] for r in report.get("Results") or []}
    assert "config" in classes  # the image config (ENV, labels, history) was checked
    verdict = evaluate(report, ignores=load_ignore_file(REPO / ".trivyignore.yaml"))
    print(f"{variant}: {verdict.report()}")
    assert verdict.passed, verdict.report()


def test_the_naive_baseline_fails_the_gate_on_its_toolchains_licenses(
    scan_image: Callable[[Variant], ImageScan],
) -> None:
    """One more cost of the full python:3.11 base (compilers, ImageMagick, -dev libraries):
    copyleft licenses the gate flags, and nothing else (no secret, no misconfiguration)."""
    verdict = evaluate(
        scan_image(Variant.basic).report, ignores=load_ignore_file(REPO / ".trivyignore.yaml")
    )
    assert not verdict.passed
    assert {f.kind for f in verdict.failing} == {"licenses"}, verdict.report()


@pytest.mark.parametrize("variant", VARIANTS)
def test_image_config_is_not_root(
    variant: Variant, scan_image: Callable[[Variant], ImageScan]
) -> None:
    report = scan_image(variant).report
    user = report["Metadata"]["ImageConfig"]["config"].get("User", "")
    assert user.split(":")[0] not in ("", "0", "root"), f"{variant} runs as {user!r}"
    failed_checks = {
        m["ID"]
        for r in report.get("Results") or []
        for m in r.get("Misconfigurations") or []
        if m.get("Status", "FAIL") == "FAIL"
    }
    assert "DS-0002" not in failed_checks  # Trivy's own "image user should not be root"


@pytest.mark.parametrize("variant", VARIANTS)
def test_sbom_is_cyclonedx_of_the_image(
    variant: Variant, scan_image: Callable[[Variant], ImageScan]
) -> None:
    sbom = scan_image(variant).sbom
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"].startswith("1.")
    tools = sbom["metadata"]["tools"]["components"]
    assert {"name": "trivy", "version": trivy.TRIVY_VERSION} in [
        {"name": t["name"], "version": t["version"]} for t in tools
    ]
    types = {c.get("type") for c in sbom["components"]}
    assert "operating-system" in types  # Debian, with its dpkg packages
    assert any(str(c.get("purl", "")).startswith("pkg:deb/debian/") for c in sbom["components"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_sbom_lists_the_locked_python_packages(
    variant: Variant, scan_image: Callable[[Variant], ImageScan]
) -> None:
    scanned = scan_image(variant)
    pins = locked(variant.spec.lock, scanned.python_version)
    listed = sbom_python_packages(scanned.sbom)
    if variant in EXACTLY_THE_LOCK:
        assert listed == pins
    else:
        assert {k: listed.get(k) for k in pins} == pins


def test_optimized_sbom_has_the_runtime_versions(
    scan_image: Callable[[Variant], ImageScan],
) -> None:
    scanned = scan_image(Variant.cpu)
    pins = locked(Variant.cpu.spec.lock, scanned.python_version)
    listed = sbom_python_packages(scanned.sbom)
    for package in RUNTIME_PACKAGES:
        assert listed[package] == pins[package], package
