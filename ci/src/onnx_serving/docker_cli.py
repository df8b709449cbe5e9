"""The `docker` command lines for a machine without Dagger: scripts/ (through local.py), the
image tests and bench/ all build and run the images with these, from the same variant table,
build args and run flags as the Dagger module. Pure Python, no dagger import.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .images import (
    CA_BUNDLE_SECRET_ID,
    CONTAINER_PORT,
    HARDENED_RUN_FLAGS,
    STOP_TIMEOUT_S,
    ImageMetadata,
)
from .variants import Variant

# Debian's client has BuildKit built in; a newer client without the buildx plugin (as in
# /usr/local/bin on some hosts) fails every DOCKER_BUILDKIT=1 build.
_BUILDKIT_CLIENT = Path("/usr/bin/docker")


def docker_binary(env: Mapping[str, str] = os.environ) -> str | None:
    """The docker client to use: $DOCKER, else Debian's /usr/bin/docker, else PATH's."""
    if env.get("DOCKER"):
        return env["DOCKER"]
    if _BUILDKIT_CLIENT.exists():
        return str(_BUILDKIT_CLIENT)
    return shutil.which("docker", path=env.get("PATH"))


def docker_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment every docker call runs in: BuildKit on (Dockerfiles mount secrets)."""
    return {**env, "DOCKER_BUILDKIT": "1"}


def build_command(
    docker: str,
    variant: Variant,
    tag: str,
    metadata: ImageMetadata,
    *,
    ca_bundle: Path | None = None,
    context: str = ".",
    no_cache: bool = False,
    host_network: bool = False,
) -> list[str]:
    """`docker build` of a variant's Dockerfile target, as the Dagger `build` function does.

    The CA bundle goes in as the `ca_bundle` BuildKit secret: mounted while pip runs, in
    no layer. `context` is the repository root (or a copy of it, whose Dockerfile is used).
    `host_network` runs the build's steps in the host's network (a --model-url on loopback).
    """
    spec = variant.spec
    dockerfile = spec.dockerfile if context == "." else f"{context}/{spec.dockerfile}"
    command = [docker, "build", "--progress=plain", "--file", dockerfile, "--tag", tag]
    if spec.target:
        command += ["--target", spec.target]
    command += [f"--build-arg={name}={value}" for name, value in metadata.build_args().items()]
    if ca_bundle is not None:
        command += ["--secret", f"id={CA_BUNDLE_SECRET_ID},src={ca_bundle}"]
    if no_cache:
        command.append("--no-cache")
    if host_network:
        command += ["--network", "host"]
    return [*command, context]


def on_loopback(url: str) -> bool:
    """Whether a URL names this machine's loopback, which only the host's network reaches."""
    return (urlsplit(url).hostname or "") in {"localhost", "127.0.0.1", "::1"}


def run_command(
    docker: str,
    image: str,
    name: str,
    *,
    host_port: int | None = None,
    hardened: bool = True,
    options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> list[str]:
    """`docker run --detach` of an image, its port published on 127.0.0.1 only.

    `host_port` None lets Docker choose a free port (read it back with `docker port`).
    """
    published = f"127.0.0.1:{host_port or ''}:{CONTAINER_PORT}"
    flags = [*HARDENED_RUN_FLAGS] if hardened else []
    return [
        docker,
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        published,
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        *flags,
        *options,
        image,
        *command,
    ]


if __name__ == "__main__":  # `python3 -m onnx_serving.docker_cli`: the client, for scripts/
    found = docker_binary()
    print(found or "")
    raise SystemExit(0 if found else 1)
