"""The module's own functions executed end to end through the local engine (local_engine/):
the SDK's entry point, the engine's mount, user and exit-code semantics, on this machine's
Docker engine. Each test asserts on what the run produced, not on the plan."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from local_engine import registry
from onnx_serving.models import MODELS_LABEL
from onnx_serving.variants import Variant
from tests.images.docker_support import Docker
from tests.images.serving import repository_index
from tests.models_for_tests import write_mlp

REPO = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = pytest.mark.docker


def pipeline(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """The local engine as scripts/pipeline.sh runs it, without its set-up (the suite's ran)
    and with only the flags given here."""
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


def test_a_single_model_file_is_built_under_the_name_given(
    docker: Docker, base_image: str, tmp_path: Path
) -> None:
    model = write_mlp(tmp_path / "one-file" / "exported.onnx")
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    named = ("--model-name", "scorer", "--model-version", "4")
    built = ok(pipeline("build", "--variant", "cpu", "--models", str(model.parent), *named))
    image_id = built.strip().splitlines()[-1]
    labels = json.loads(docker.run("image", "inspect", image_id).stdout)[0]["Config"]["Labels"]
    assert labels[MODELS_LABEL] == f"scorer/4@sha256:{sha256}"
    with running(docker, image_id) as url:
        index = repository_index(url)
    assert [(m["name"], m["version"], m["sha256"]) for m in index] == [("scorer", "4", sha256)]


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


REVISION = "0123456789abcdef0123456789abcdef01234567"


def published(out: str) -> dict[str, str]:
    """`publish`'s lines: tag -> digest."""
    lines = [line for line in out.splitlines() if "@sha256:" in line]
    return {line.split("@")[0].rsplit(":", 1)[1]: line.split("@")[1] for line in lines}


@contextlib.contextmanager
def running(docker: Docker, reference: str) -> Iterator[str]:
    """The image run until healthy, published on 127.0.0.1; yields its host:port."""
    name = f"engine-published-{uuid.uuid4().hex[:8]}"
    docker.run("run", "--detach", "--name", name, "--publish", "127.0.0.1::8000", reference)
    try:
        health = ["inspect", "--format", "{{.State.Health.Status}}", name]
        for _ in range(240):  # its HEALTHCHECK says when it serves (docker-proxy accepts sooner)
            if docker.run(*health).stdout.strip() in ("healthy", "unhealthy"):
                break
            time.sleep(0.5)
        assert docker.run(*health).stdout.strip() == "healthy"
        yield "127.0.0.1:" + docker.run("port", name, "8000/tcp").stdout.strip().rsplit(":", 1)[1]
    finally:
        docker.run("rm", "--force", name, check=False)


def serve_and_smoke(docker: Docker, reference: str) -> None:
    """Pull the published digest back, run it, and smoke-test it with the project's client."""
    docker.run("pull", "--platform", "linux/amd64", reference)
    with running(docker, reference) as url:
        smoke = subprocess.run(
            [sys.executable, "-m", "onnx_serving.smoke", "--url", url],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO / "ci/src")},
        )
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr


def test_publish_a_release_edge_and_scan_what_was_published(
    docker: Docker, base_image: str
) -> None:
    repository = f"engine-test/onnx-serving-{uuid.uuid4().hex[:8]}"
    target = ["--registry", "127.0.0.1:5000", "--repository", repository, "--variants", "cpu"]

    release = published(ok(pipeline("--offline-scan", "publish", "--tag", "v1.2.3", *target)))
    assert set(release) == {"1.2.3", "1.2", "1", "latest"}
    assert len(set(release.values())) == 1  # every tag names the verified images
    index = registry.index_of(f"127.0.0.1:5000/{repository}:1.2.3")
    assert index is not None
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    serve_and_smoke(docker, f"127.0.0.1:5000/{repository}@{release['1.2.3']}")

    edge_run = pipeline("--offline-scan", f"--revision={REVISION}", "publish", "--edge", *target)
    edge = published(ok(edge_run))
    assert set(edge) == {"edge", f"sha-{REVISION[:7]}"}
    assert len(set(edge.values())) == 1

    # scan-published reads every published variant under a tag: the gpu one is the cpu
    # image under its tag here (no GPU image is built on this machine).
    registry.retag(f"127.0.0.1:5000/{repository}:edge-gpu", edge["edge"])
    report = ok(
        pipeline(
            "--offline-scan",
            "scan-published",
            "--registry",
            "127.0.0.1:5000",
            "--repository",
            repository,
            "--tags",
            "edge",
        )
    )
    assert f"127.0.0.1:5000/{repository}:edge " in report + " "
    assert f"127.0.0.1:5000/{repository}:edge-gpu" in report
    assert report.count("trivy gate PASS") == 2


def test_lint_runs_every_linter_on_the_checkout(base_image: str) -> None:
    out = ok(pipeline("lint"))
    for step in ("ruff", "mypy", "hadolint", "zizmor", "workflows"):
        assert f"{step}: ok" in out


def test_benchmark_loads_the_served_image(base_image: str) -> None:
    out = ok(pipeline("benchmark", "--requests", "100", "--concurrency", "2"))
    assert "requests ok=100 failed=0 concurrency=2" in out


def test_serve_up_forwards_a_port_until_interrupted(
    docker: Docker, base_image: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ca = [f"--ca-bundle=file://{CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    # Its output goes to a file: an unread pipe that fills would block it, SIGINT included.
    output = tmp_path / "serve-up.log"
    with output.open("w") as log:
        serving = subprocess.Popen(
            [sys.executable, "-m", "local_engine", *ca, "serve", "up", "--ports", f"{port}:8000"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            # A run started in the background (`cmd &`) inherits SIGINT ignored, and Python
            # keeps it so: the engine is given Ctrl-C's default, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        smoke = [sys.executable, "-m", "onnx_serving.smoke", "--url", f"127.0.0.1:{port}"]
        env = {**os.environ, "PYTHONPATH": str(REPO / "ci/src")}
        for _ in range(600):  # up returns nothing until the service is ready
            if serving.poll() is not None:
                break
            done = subprocess.run(smoke, capture_output=True, text=True, env=env, check=False)
            if done.returncode == 0:
                break
            time.sleep(0.5)
        assert serving.poll() is None, output.read_text()[-2000:]
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        serving.send_signal(signal.SIGINT)
        try:
            serving.wait(120)
        finally:
            if serving.poll() is None:  # never leave it (and its service) running
                serving.kill()
    assert serving.returncode == 130, output.read_text()[-2000:]
    left = docker.run("ps", "--all", "--quiet", "--filter", "name=local-engine-service").stdout
    assert left.strip() == ""
