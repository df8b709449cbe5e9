"""The pipeline's jobs on a machine with Docker and without Dagger: what scripts/ runs.

Every fact comes from the same modules the Dagger functions use (the variant table, build
args, the CA secret id, run flags, the smoke command), so a laptop build is the CI build.
Stdlib only: run it with any Python 3.11 and PYTHONPATH=ci/src.

    python3 -m onnx_serving.local build [MODEL OPTIONS] [VARIANT ...]
    python3 -m onnx_serving.local serve [--port 8000] [--name onnx-serving] [MODEL OPTIONS]
    python3 -m onnx_serving.local test-image IMAGE
    python3 -m onnx_serving.local push IMAGE REGISTRY/REPOSITORY VERSION [--variant VARIANT]

MODEL OPTIONS: --models DIR|FILE [--model-name NAME] [--model-version N], or
--model-url URL --model-sha256 HEX [--model-name NAME] [--model-version N] (models.py).

Errors are one line naming the bad value (exit 2 for usage, 1 for a failed job).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import commands, docker_cli, validation
from .images import CONTAINER_PORT, STOP_TIMEOUT_S, ImageMetadata, dockerfile_base_image
from .models import (
    MODEL_FILE,
    MODELS_LABEL,
    ModelIdentity,
    ModelOptions,
    model_layout,
    models_label,
    repository_entry,
)
from .tags import edge_tags, image_tags
from .variants import LOCAL_REPOSITORY, Variant

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HEALTHY_TIMEOUT_S = 120.0
HEALTH_FORMAT = "{{.State.Status}}/{{.State.Health.Status}}"
LABEL_FORMAT = f'{{{{ index .Config.Labels "{MODELS_LABEL}" }}}}'
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
    dockerfile = variant.spec.dockerfile
    return dockerfile_base_image(dockerfile, (REPO / dockerfile).read_text())


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
    done = docker.run([str(REPO / "scripts/ensure_image.sh"), image], timeout=900)
    if done.returncode != 0:
        raise JobError(f"base image {image}: {_last_line(done.stderr)}")


def context_paths() -> list[str]:
    """What a build context holds: the `!` entries of .dockerignore's allow-list."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def models_identity(repository: Path) -> str:
    """The models label of a model repository folder: every version's sha256."""
    found = []
    for path in repository.glob(f"*/*/{MODEL_FILE}"):
        if entry := repository_entry(path.relative_to(repository).as_posix()):
            digest = hashlib.sha256()
            with path.open("rb") as model:
                while chunk := model.read(1 << 20):
                    digest.update(chunk)
            found.append(ModelIdentity(*entry, digest.hexdigest()))
    return models_label(found)


@contextlib.contextmanager
def build_context(models: Path | None, options: ModelOptions) -> Iterator[str]:
    """The repository root, or, with `models`, a copy of its build context whose models/ is
    that repository (or that one .onnx file as `<name>/<version>/model.onnx`)."""
    if models is None:
        yield "."
        return
    files = [p.relative_to(models).as_posix() for p in models.rglob("*.onnx")]
    if models.is_file():
        files, models = [models.name], models.parent
    layout = model_layout(str(models), files, options)
    with tempfile.TemporaryDirectory(prefix="onnx-serving-context-") as tmp:
        context = Path(tmp)
        for relative in [*context_paths(), ".dockerignore", "dockerfiles"]:
            source, target = REPO / relative, context / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy2(source, target)
        shutil.rmtree(context / "models", ignore_errors=True)
        if layout.single_file is not None and layout.repository_path is not None:
            target = context / "models" / layout.repository_path
            target.parent.mkdir(parents=True)
            shutil.copy2(models / layout.single_file, target)
        else:
            shutil.copytree(models, context / "models")
        for path in (context / "models").rglob("*"):  # the image's user must read them
            path.chmod(0o755 if path.is_dir() else 0o644)
        print(f"build: models from {models} ({', '.join(layout.names)})")
        yield str(context)


def build(
    docker: Docker,
    variant: Variant,
    tag: str | None = None,
    models: Path | None = None,
    options: ModelOptions | None = None,
) -> str:
    """Build a variant as `onnx-serving:<variant>` (or `tag`); returns the tag."""
    tag = tag or variant.local_tag
    base = base_image(variant)
    metadata = checkout_metadata()
    if os.environ.get("BASE_IMAGE"):
        metadata = dataclasses.replace(metadata, base_image=base)
    # The model options and folder are checked first: an error before anything is built.
    options = (options or ModelOptions()).checked(models is not None)
    with build_context(models, options) as context:
        if options.url:
            label = models_label([options.fetched_identity()])
        else:
            label = models_identity(REPO / context / "models")
        metadata = dataclasses.replace(metadata, models=label, fetch=options)
        ensure_base_image(docker, base)
        print(f"build: {tag} ({variant.spec.dockerfile}, target {variant.spec.target or '-'})")
        command = docker_cli.build_command(
            docker.binary,
            variant,
            tag,
            metadata,
            ca_bundle=ca_bundle(),
            context=context,
            host_network=docker_cli.on_loopback(options.url),
        )
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


def smoke(docker: Docker, url: str, image: str) -> None:
    """The smoke client the Dagger checks run, on every served model and the image's models
    label; needs .venv."""
    python = REPO / ".venv/bin/python"
    if not python.exists():
        raise JobError("no .venv for the smoke client: ./scripts/dev_env.sh creates it")
    label = docker.output("image", "inspect", "--format", LABEL_FORMAT, image)
    label = "" if label == "<no value>" else label  # an image with no labels at all
    command = commands.smoke_command(url, python=str(python), models_label=label)
    done = subprocess.run(command, cwd=REPO, timeout=300, check=False)
    if done.returncode != 0:
        raise JobError(f"smoke test against {url} failed")


def serve(
    port: int, name: str, models: Path | None = None, options: ModelOptions | None = None
) -> None:
    """The main job: build the cpu image (with `models` / `options` if given), run it
    hardened on 127.0.0.1:PORT, wait, smoke."""
    docker = Docker()
    docker.require_engine()
    docker.run([docker.binary, "rm", "--force", name])  # our own previous run
    if _port_in_use(port):
        raise JobError(f"127.0.0.1:{port} is already in use; choose another with PORT=...")
    tag = build(docker, Variant.cpu, models=models, options=options)
    print(f"serve: starting {name} on 127.0.0.1:{port}")
    docker.output(*docker_cli.run_command(docker.binary, tag, name, host_port=port)[1:])
    wait_healthy(docker, name)
    smoke(docker, f"127.0.0.1:{port}", tag)
    print(
        f"\nonnx-serving is up: http://127.0.0.1:{port}  (image {tag}, container {name})\n"
        f"  curl -s -X POST http://127.0.0.1:{port}/v2/repository/index\n"
        f"  .venv/bin/python -m onnx_serving.smoke --url 127.0.0.1:{port}\n"
        f"Logs: docker logs -f {name}        Stop: docker stop {name} && docker rm {name}"
    )


def test_image(image: str) -> None:
    """Run an image as users should (hardened, loopback port), wait for healthy, smoke-test
    every served model from its metadata, then SIGTERM: it must exit 0."""
    docker = Docker()
    docker.require_engine()
    if docker.run([docker.binary, "image", "inspect", image]).returncode != 0:
        raise JobError(f"no local image {image!r} (./scripts/build.sh builds onnx-serving:cpu)")
    name = f"onnx-serving-test-{uuid.uuid4().hex[:8]}"
    docker.output(*docker_cli.run_command(docker.binary, image, name)[1:])
    try:
        port = docker.output("port", name, f"{CONTAINER_PORT}/tcp").splitlines()[0]
        url = f"127.0.0.1:{port.rsplit(':', 1)[1]}"
        wait_healthy(docker, name)
        smoke(docker, url, image)
        stopped = docker.run([docker.binary, "stop", "--time", str(STOP_TIMEOUT_S), name], 120)
        if stopped.returncode != 0:
            raise JobError(f"docker stop {name}: {_last_line(stopped.stderr)}")
        code = docker.output("inspect", "--format", "{{.State.ExitCode}}", name)
        if code != "0":
            raise JobError(f"{image} exited {code} on SIGTERM, not 0 (graceful shutdown)")
        print(f"test-image: OK {image}: healthy, smoke OK, SIGTERM -> exit 0")
    finally:
        docker.run([docker.binary, "rm", "--force", name])


_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def push(image: str, destination: str, version: str, variant: Variant) -> list[str]:
    """Tag and push `image` under every tag `publish` would give it; the ref@digest lines."""
    host, _, path = destination.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise JobError(
            f"invalid destination {destination!r}: expected REGISTRY/REPOSITORY, "
            "e.g. ghcr.io/my-org/onnx-serving or 127.0.0.1:5000/onnx-serving"
        )
    host = validation.registry(host)
    path = validation.repository(path, host)
    suffix = variant.spec.tag_suffix
    if version == "edge":
        tags = edge_tags(_git("rev-parse", "HEAD"), suffix)
    else:
        tags = image_tags(version, suffix, _git("tag", "--list").split())
    docker = Docker()
    docker.require_engine()
    lines = []
    for tag in tags:
        ref = f"{host}/{path}:{tag}"
        docker.output("tag", image, ref)
        done = docker.run([docker.binary, "push", ref], timeout=1800)
        match = _DIGEST.search(done.stdout)
        if done.returncode != 0 or match is None:
            raise JobError(f"docker push {ref}: {_last_line(done.stderr or done.stdout)}")
        lines.append(f"{ref}@{match.group(1)}")
    return lines


def variant_of(image: str) -> Variant:
    """The variant a local tag `onnx-serving:<variant>` names; cpu for any other image."""
    repository, _, tag = image.rpartition(":")
    if repository == LOCAL_REPOSITORY and tag in {v.value for v in Variant}:
        return Variant(tag)
    return Variant.cpu


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


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, help="model repository or one .onnx file to bake in")
    parser.add_argument("--model-name", default="", help="name a single .onnx file serves as")
    parser.add_argument("--model-version", type=int, help="its version (default 1)")
    parser.add_argument("--model-url", default="", help="fetch the model during the build")
    parser.add_argument("--model-sha256", default="", help="the --model-url file's sha256")


def _model_options(args: argparse.Namespace) -> ModelOptions:
    return ModelOptions(args.model_name, args.model_version, args.model_url, args.model_sha256)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnx_serving.local", description=__doc__)
    jobs = parser.add_subparsers(dest="job", required=True)
    build_parser = jobs.add_parser("build", help="build variants as onnx-serving:<variant>")
    build_parser.add_argument("variants", nargs="*", type=parse_variant, help="default: all")
    _add_model_options(build_parser)
    test_parser = jobs.add_parser("test-image", help="run, smoke-test and stop an image")
    test_parser.add_argument("image")
    push_parser = jobs.add_parser("push", help="push an image under the release's tags")
    push_parser.add_argument("image")
    push_parser.add_argument("destination", help="REGISTRY/REPOSITORY")
    push_parser.add_argument("version", help="release tag (v1.2.3) or edge")
    push_parser.add_argument(
        "--variant", type=parse_variant, help="tag suffix of this variant (default: from IMAGE)"
    )
    bases_parser = jobs.add_parser("bases", help="print the base images variants build FROM")
    bases_parser.add_argument("variants", nargs="*", type=parse_variant, help="default: all")
    serve_parser = jobs.add_parser("serve", help="build, run and smoke-test the cpu image")
    serve_parser.add_argument("--port", type=_port, default=os.environ.get("PORT", "8000"))
    serve_parser.add_argument("--name", default=os.environ.get("NAME", "onnx-serving"))
    _add_model_options(serve_parser)
    args = parser.parse_args(argv)
    try:
        if args.job == "bases":
            for image in sorted({base_image(v) for v in args.variants or list(Variant)}):
                print(image)
        elif args.job == "build":
            docker = Docker()
            docker.require_engine()
            for variant in args.variants or list(Variant):
                print(build(docker, variant, models=args.models, options=_model_options(args)))
        elif args.job == "test-image":
            test_image(args.image)
        elif args.job == "push":
            variant = args.variant or variant_of(args.image)
            for line in push(args.image, args.destination, args.version, variant):
                print(line)
        else:
            serve(args.port, args.name, args.models, _model_options(args))
    except (JobError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"{args.job}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
