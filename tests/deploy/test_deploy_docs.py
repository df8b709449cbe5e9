"""docs/DEPLOY.md stays true: its client snippets serve a request from a real server on
127.0.0.1 (with the Host header an ingress routes on), and its versions are the pinned ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnx_serving.deploy import kserve, kubernetes, kustomize, pod
from onnx_serving.variants import Variant
from tests.service.live_server import LiveServer, running_server

from .support import REPO

DOC = REPO / "docs/DEPLOY.md"
HOST = "onnx-serving.onnx-serving.example.com"  # what an InferenceService's URL names


def snippet(marker: str) -> str:
    """The fenced block right after `<!-- client:MARKER -->` in docs/DEPLOY.md."""
    pattern = rf"<!-- client:{marker} -->\n```[a-z]+\n(.*?)\n```"
    match = re.search(pattern, DOC.read_text(), re.DOTALL)
    assert match is not None, f"no {marker} snippet in {DOC}"
    return match.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server as the image runs it, serving the docs' example model: the default MLP
    (`mlp`), written by the tests."""
    log = tmp_path_factory.mktemp("deploy-docs") / "server.log"
    with running_server({}, log) as live:
        yield live


def _client_env(server: LiveServer) -> dict[str, str]:
    return {**os.environ, "INGRESS": server.url, "SERVICE_HOSTNAME": HOST}


def test_the_tritonclient_snippet_serves_a_request(server: LiveServer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", snippet("tritonclient")],
        env=_client_env(server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["logits", "label"], done.stdout


def test_the_curl_snippet_serves_a_request(server: LiveServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    # python3 in the snippet is whatever the user has; here, this interpreter.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {**_client_env(server), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet("curl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"model_name":"mlp"' in done.stdout.replace(" ", "")
    assert '"name":"logits"' in done.stdout.replace(" ", "")


def test_the_doc_names_the_pinned_versions_and_real_options() -> None:
    text = DOC.read_text()
    assert f"KServe {kserve.KSERVE_RELEASE}" in text
    assert f"tests/deploy/kserve-{kserve.KSERVE_RELEASE}/" in text
    for version in kubernetes.KUBERNETES_VERSIONS:
        assert f"**{version.rsplit('.', 1)[0]}**" in text
    done = subprocess.run(
        [sys.executable, "-m", "onnx_serving.manifests", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "ci/src")},
    )
    commands = [
        line
        for line in text.replace("\\\n", " ").splitlines()
        if "manifests.sh" in line or "dagger call manifests" in line
    ]
    options = {o for line in commands for o in re.findall(r"\s(--[a-z-]+)", line)}
    assert {"--image", "--variant", "--out", "--storage-uri", "--sources"} <= options
    assert sorted(o for o in options if o not in done.stdout) == ["--path"]  # Dagger's export
    assert kustomize.SOURCES_COMMAND in text


def test_the_doc_states_the_rendered_numbers() -> None:
    text = " ".join(DOC.read_text().split())  # line breaks as spaces
    cpu, gpu = pod.sizing(Variant.cpu), pod.sizing(Variant.gpu)
    for stated in (
        f"`terminationGracePeriodSeconds` ({kubernetes.TERMINATION_GRACE_S})",
        f"a {kubernetes.PRE_STOP_S} s `preStop` pause",
        f"CPU: {cpu.cpu} cores, {cpu.memory.removesuffix('Gi')} GiB; "
        f"GPU: {gpu.cpu} cores, {gpu.memory.removesuffix('Gi')} GiB",
        f"**CPU utilization at {kubernetes.CPU_TARGET_PERCENT} % of the request**",
        f"between {cpu.min_replicas} and {cpu.max_replicas} pods "
        f"(GPU: {gpu.min_replicas} to {gpu.max_replicas})",
        f"target {cpu.kserve_concurrency} for CPU, {gpu.kserve_concurrency} for GPU",
        f"`maxSurge: {cpu.max_surge}`, `maxUnavailable: {cpu.max_unavailable}`",
        f"`maxSurge: {gpu.max_surge}`, `maxUnavailable: {gpu.max_unavailable}`",
        f"({cpu.startup_s} s on CPU, {gpu.startup_s // 60} minutes on GPU",
    ):
        assert stated in text, stated
