"""The Docker side of the image tests: constants, the CLI wrapper, running containers.

Imported by tests/conftest.py (the shared fixtures) and by tests that need the types or
constants: `from tests.images.docker_support import Container, LEAK_CANARY, ...`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from onnx_serving import docker_cli
from onnx_serving.images import ImageMetadata
from onnx_serving.local import base_image
from onnx_serving.variants import Variant

REPO = Path(__file__).resolve().parents[2]
IMAGE_REPOSITORY = "images-onnx-serving"  # local tags: images-onnx-serving:test-<variant>
VARIANTS = tuple(Variant)
# Distinctive values, so the label test proves the args (not the defaults) reached the image.
METADATA = ImageMetadata(
    version="0.0.0-test.1",
    revision="0123456789abcdef0123456789abcdef01234567",
    created="2026-01-02T03:04:05Z",
    source_url="https://example.invalid/onnx-serving",
)
BUILD_ARGS = METADATA.build_args()
BASE_IMAGES = sorted({base_image(v) for v in Variant})
# Stable across sessions (cached layers from an earlier run are checked for it too), and
# computed here rather than written out, so no file of the repo contains it literally.
LEAK_CANARY = (
    "onnx-serving-secret-canary-" + hashlib.sha256(b"images: never in a layer").hexdigest()[:32]
)
BUILD_TIMEOUT_S = {Variant.gpu: 1800}  # 2.5 GB of CUDA wheels on a cold cache; others: 900
HEALTHY_TIMEOUT_S = 180


@functools.cache
def docker_problem() -> str | None:
    """Why the Docker engine cannot be used here, or None when it can."""
    binary = docker_cli.docker_binary()
    if binary is None:
        return "no docker client on this machine"
    try:
        info = subprocess.run(
            [binary, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`docker version` timed out"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine: {reason}"
    return None


@dataclass(frozen=True)
class Docker:
    """The docker CLI with BuildKit on; every call is bounded by a timeout."""

    binary: str
    env: dict[str, str] = field(repr=False)

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
                pytrace=False,
            )
        return result

    def output(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def ensure_image(self, image: str) -> str:
        """Make `image` local with scripts/ensure_image.sh (local, pulled, or a Debian stand-in)."""
        done = subprocess.run(
            ["scripts/ensure_image.sh", image],
            capture_output=True,
            text=True,
            timeout=900,
            env=self.env,
            cwd=REPO,
        )
        if done.returncode != 0:
            pytest.fail(f"ensure_image.sh {image} failed:\n{done.stderr[-3000:]}", pytrace=False)
        return image

    def build(self, variant: Variant, tag: str, secret_file: Path) -> None:
        """The build scripts/ and bench/ run, with METADATA and `secret_file` as ca_bundle."""
        command = docker_cli.build_command(
            self.binary, variant, tag, METADATA, ca_bundle=secret_file
        )
        self.run(*command[1:], timeout=BUILD_TIMEOUT_S.get(variant, 900))


@dataclass
class Container:
    """A running container with port 8000 published on a free 127.0.0.1 port."""

    docker: Docker
    name: str
    url: str  # host:port, what tritonclient and the smoke client take

    def health(self) -> str:
        return self.docker.output("inspect", "--format", "{{.State.Health.Status}}", self.name)

    def logs(self) -> str:
        result = self.docker.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        """Bounded wait for Docker's HEALTHCHECK verdict `healthy`; fail with the logs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.docker.output(
                "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", self.name
            )
            if state == "running healthy":
                return
            if not state.startswith("running") or state.endswith("unhealthy"):
                break
            time.sleep(0.5)
        pytest.fail(f"container {self.name} not healthy ({state}):\n{self.logs()[-4000:]}")

    def exec(self, *command: str) -> str:
        return self.docker.output("exec", self.name, *command)

    def stop(self, grace_s: int = 30) -> int:
        """SIGTERM, wait up to grace_s, then return the exit code."""
        self.docker.run("stop", "--time", str(grace_s), self.name, timeout=grace_s + 60)
        return int(self.docker.output("inspect", "--format", "{{.State.ExitCode}}", self.name))


def unique_name(prefix: str = "images-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def host_ca_bundle() -> Path:
    """The PEM bundle pip in the build should trust: the host's (it knows the proxy CA)."""
    candidates = [
        os.environ.get("CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
        ssl.get_default_verify_paths().cafile,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail(f"no CA bundle found (tried {candidates}); set CA_BUNDLE")
