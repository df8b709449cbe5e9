"""The pipeline's jobs on a machine with Docker and without Dagger: what scripts/ runs.

Every fact comes from the same modules the Dagger functions use (the variant table, build
args, the CA secret id, run flags, the smoke command), so a laptop build is the CI build.
Stdlib only: run it with any Python 3.11 and PYTHONPATH=ci/src.

    python3 -m onnx_serving.local build [VARIANT ...]
    python3 -m onnx_serving.local serve [--port 8000] [--name onnx-serving]

Errors are one line naming the bad value (exit 2 for usage, 1 for a failed job).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import commands, docker_cli
from .images import ImageMetadata
from .variants import Variant

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HEALTHY_TIMEOUT_S = 120.0
HEALTH_FORMAT = "{{.State.Status}}/{{.State.Health.Status}}"
BUILD_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "onnx-serving-build.log"


class JobError(Exception):
    """A job failed; the message says what and where to look."""


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def checkout_metadata() -> ImageMetadata:
    """Labels for a local build: `git describe` and the commit when run in a checkout."""
    return ImageMetadata(
        version=_git("describe", "--tags", "--always", "--dirty").removeprefix("v"),
        revision=_git("rev-parse", "HEAD"),
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def ca_bundle() -> Path | None:
    """CA_BUNDLE, else the host's bundle: pip in the build trusts it (TLS-intercepting proxies)."""
    path = Path(os.environ.get("CA_BUNDLE") or DEFAULT_CA_BUNDLE)
    return path if path.is_file() and path.stat().st_size else None


def base_image(variant: Variant) -> str:
    """The `ARG BASE_IMAGE=` default of the variant's Dockerfile (BASE_IMAGE overrides)."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    text = (REPO / variant.spec.dockerfile).read_text()
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    if match is None:
        raise JobError(f"{variant.spec.dockerfile} declares no ARG BASE_IMAGE default")
    return match.group(1)


class Docker:
    """The docker client, every call bounded and BuildKit on."""

    def __init__(self) -> None:
        binary = docker_cli.docker_binary()
        if binary is None:
            raise JobError("no docker client found (install docker.io, or set DOCKER=...)")
        self.binary = binary
        self.env = docker_cli.docker_env()

    def run(self, command: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def output(self, *args: str) -> str:
        done = self.run([self.binary, *args])
        if done.returncode != 0:
            raise JobError(f"docker {' '.join(args)}: {_last_line(done.stderr)}")
        return done.stdout.strip()

    def require_engine(self) -> None:
        done = self.run([self.binary, "version", "--format", "{{.Server.Version}}"], timeout=30)
        if done.returncode != 0:
            raise JobError(
                f"no Docker engine answers {self.binary}: {_last_line(done.stderr)} "
                "(./scripts/setup.sh starts one)"
            )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def ensure_base_image(docker: Docker, image: str) -> None:
    done = docker.run([str(REPO / "scripts/ensure_base_image.sh"), image], timeout=900)
    if done.returncode != 0:
        raise JobError(f"base image {image}: {_last_line(done.stderr)}")


def build(docker: Docker, variant: Variant, tag: str | None = None) -> str:
    """Build a variant as `onnx-serving:<variant>` (or `tag`); returns the tag."""
    tag = tag or variant.local_tag
    base = base_image(variant)
    ensure_base_image(docker, base)
    metadata = checkout_metadata()
    if os.environ.get("BASE_IMAGE"):
        metadata = dataclasses.replace(metadata, base_image=base)
    command = docker_cli.build_command(docker.binary, variant, tag, metadata, ca_bundle=ca_bundle())
    print(f"build: {tag} ({variant.spec.dockerfile}, target {variant.spec.target or '-'})")
    done = docker.run(command, timeout=3600)
    BUILD_LOG.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print("\n".join(done.stderr.splitlines()[-30:]), file=sys.stderr)
        raise JobError(f"build of {tag} failed (full log: {BUILD_LOG})")
    return tag


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(docker: Docker, name: str, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
    """Bounded wait for Docker's HEALTHCHECK verdict; the logs' tail when it never comes."""
    deadline = time.monotonic() + timeout_s
    state = "starting"
    while time.monotonic() < deadline:
        state = docker.output("inspect", "--format", HEALTH_FORMAT, name)
        if state == "running/healthy" or state.endswith("/unhealthy"):
            break
        if not state.startswith("running/"):
            break
        time.sleep(0.5)
    if state != "running/healthy":
        logs = docker.run([docker.binary, "logs", "--tail", "30", name])
        print(logs.stdout + logs.stderr, file=sys.stderr)
        raise JobError(f"container {name} is not healthy ({state})")


def smoke(url: str, model: str = "mlp") -> None:
    """The smoke client the Dagger `test` check runs; needs the .venv of scripts/dev_env.sh."""
    python = REPO / ".venv/bin/python"
    if not python.exists():
        print("smoke: skipped: no .venv (./scripts/dev_env.sh creates it)")
        return
    done = subprocess.run(
        commands.smoke_command(url, model, python=str(python)), cwd=REPO, timeout=180, check=False
    )
    if done.returncode != 0:
        raise JobError(f"smoke test against {url} failed")


def serve(port: int, name: str) -> None:
    """The main job: build the cpu image, run it hardened on 127.0.0.1:PORT, wait, smoke."""
    docker = Docker()
    docker.require_engine()
    docker.run([docker.binary, "rm", "--force", name])  # our own previous run
    if _port_in_use(port):
        raise JobError(f"127.0.0.1:{port} is already in use; choose another with PORT=...")
    tag = build(docker, Variant.cpu)
    print(f"serve: starting {name} on 127.0.0.1:{port}")
    docker.output(*docker_cli.run_command(docker.binary, tag, name, host_port=port)[1:])
    wait_healthy(docker, name)
    smoke(f"127.0.0.1:{port}")
    print(
        f"\nonnx-serving is up: http://127.0.0.1:{port}  (image {tag}, container {name})\n"
        f"  curl -s http://127.0.0.1:{port}/v2/models/mlp\n"
        f"  .venv/bin/python {commands.SMOKE_CLIENT} --url 127.0.0.1:{port} --model mlp\n"
        f"Logs: docker logs -f {name}        Stop: docker stop {name} && docker rm {name}"
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port number, got {text!r}")
    return int(text)


def parse_variant(text: str) -> Variant:
    try:
        return Variant(text)
    except ValueError:
        choices = ", ".join(v.value for v in Variant)
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}: choose {choices}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnx_serving.local", description=__doc__)
    jobs = parser.add_subparsers(dest="job", required=True)
    build_parser = jobs.add_parser("build", help="build variants as onnx-serving:<variant>")
    build_parser.add_argument("variants", nargs="*", type=parse_variant, help="default: all")
    bases_parser = jobs.add_parser("bases", help="print the base images variants build FROM")
    bases_parser.add_argument("variants", nargs="*", type=parse_variant, help="default: all")
    serve_parser = jobs.add_parser("serve", help="build, run and smoke-test the cpu image")
    serve_parser.add_argument("--port", type=_port, default=os.environ.get("PORT", "8000"))
    serve_parser.add_argument("--name", default=os.environ.get("NAME", "onnx-serving"))
    args = parser.parse_args(argv)
    try:
        if args.job == "bases":
            for image in sorted({base_image(v) for v in args.variants or list(Variant)}):
                print(image)
        elif args.job == "build":
            docker = Docker()
            docker.require_engine()
            for variant in args.variants or list(Variant):
                print(build(docker, variant))
        else:
            serve(args.port, args.name)
    except (JobError, subprocess.TimeoutExpired) as exc:
        print(f"{args.job}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
