"""The module's own functions executed end to end through the local engine (local_engine/):
the SDK's entry point, the engine's mount, user and exit-code semantics, on this machine's
Docker engine. Each test asserts on what the run produced, not on the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from onnx_serving.variants import Variant
from tests.images.docker_support import Docker

REPO = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = pytest.mark.docker


def pipeline(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """`scripts/pipeline.sh ARGS` without its set-up (the suite's set-up already ran)."""
    ca = [f"--ca-bundle=file://{CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    return subprocess.run(
        [sys.executable, "-m", "local_engine", *ca, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_an_unknown_flag_is_one_line_before_anything_runs() -> None:
    done = pipeline("scan", "--variant", "nope")
    assert done.returncode == 2
    assert "--variant: 'nope' is not one of cpu, gpu, dev, basic" in done.stderr


def test_manifests_are_exported_for_a_digest(tmp_path: Path) -> None:
    image = "127.0.0.1:5000/team/onnx-serving@sha256:" + "a" * 64
    ok(pipeline("manifests", "--image", image, "export", "--path", str(tmp_path / "out")))
    documents = list(yaml.safe_load_all((tmp_path / "out/cpu/kubernetes.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == image


def test_build_loads_the_image_with_its_labels(docker: Docker, base_image: str) -> None:
    image_id = ok(pipeline("build", "--variant", "cpu")).strip().splitlines()[-1]
    inspected = json.loads(docker.run("image", "inspect", image_id).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"  # the Dockerfile's USER
    assert "org.opencontainers.image.version" in config["Labels"]
    assert inspected["Architecture"] == "amd64"


def test_scan_runs_trivy_as_the_check_user_and_judges_the_report(base_image: str) -> None:
    # Trivy runs as 10001 and writes its report beside the tarball: the engine creates a
    # mount point's missing parent root-owned, and writes a tarball root-owned 0600.
    out = ok(pipeline("--offline-scan", "scan", "--variant", "cpu"))
    assert "trivy gate PASS: cpu image at HIGH,CRITICAL" in out
    assert "vulnerabilities NOT scanned (--offline-scan)" in out


def test_sbom_lists_the_locked_packages(tmp_path: Path, base_image: str) -> None:
    target = tmp_path / "sbom.cdx.json"
    ok(pipeline("sbom", "--variant", "cpu", "export", "--path", str(target)))
    sbom = json.loads(target.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    found: dict[str, str] = {
        canonicalize_name(c["name"]): c.get("version", "") for c in sbom["components"]
    }
    locked: dict[str, set[str]] = {}  # a package may be locked per platform (markers)
    for line in (REPO / Variant.cpu.spec.lock).read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            locked.setdefault(canonicalize_name(name), set()).add(version.split()[0].split(";")[0])
    assert locked
    for name, versions in locked.items():
        assert found.get(name) in versions, name
