"""What every build of an image passes, and what every run of one relies on.

The Dockerfiles are the single source of truth for image contents; these are the facts the
tools around them share: the Dagger module (build.py), the scripts (local.py) and the tests.
Pure Python, no dagger import.

Version label rule: a release publishes its tag's version (tags.py); a local build passes
`git describe` when it runs in a checkout; anything else keeps the Dockerfile's default,
`ARG VERSION=0.0.0-dev`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .models import ModelOptions

# The BuildKit secret id the Dockerfiles mount (`RUN --mount=type=secret,id=ca_bundle`): a CA
# bundle pip trusts behind a TLS-intercepting proxy, never in a layer.
CA_BUNDLE_SECRET_ID = "ca_bundle"

# The image's runtime contract (dockerfiles/Dockerfile; tests/images check the built config).
CONTAINER_PORT = 8000
IMAGE_UID = 10001
MODEL_DIR = "/models"  # MODEL_REPOSITORY in the image: mount your own repository here
# Docker's default stop timeout (10 s) is shorter than the server's drain
# (SHUTDOWN_TIMEOUT_S, 30 s): give it that long before SIGKILL, plus a margin.
STOP_TIMEOUT_S = 35
# How the images are meant to run: read-only root, nothing but /tmp writable, no
# capabilities, no privilege escalation. scripts/ and the hardening tests use exactly these;
# compose.yaml states the same (tests/images/test_compose_config.py compares).
HARDENED_RUN_FLAGS: tuple[str, ...] = (
    "--read-only",
    "--tmpfs",
    "/tmp:rw,noexec,nosuid,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)


@dataclass(frozen=True)
class ImageMetadata:
    """Values for the Dockerfiles' build args; empty means "keep the Dockerfile's default"."""

    version: str = ""
    revision: str = ""
    created: str = ""
    source_url: str = ""
    base_image: str = ""
    models: str = ""  # the models label (models.models_label) of what the image serves
    fetch: ModelOptions = field(default_factory=ModelOptions)  # a --model-url download

    def build_args(self) -> dict[str, str]:
        """Only the args that are set: an empty arg would blank the Dockerfile's default."""
        pairs = {
            "BASE_IMAGE": self.base_image,
            "VERSION": self.version,
            "REVISION": self.revision,
            "CREATED": self.created,
            "SOURCE_URL": self.source_url,
            "MODELS": self.models,
            **self.fetch.build_args(),
        }
        return {name: value for name, value in pairs.items() if value}


_BASE_IMAGE_ARG = re.compile(r"^ARG BASE_IMAGE=(\S+)", re.MULTILINE)


def dockerfile_base_image(dockerfile: str, text: str) -> str:
    """The `ARG BASE_IMAGE=` default of a Dockerfile's text: the image it builds FROM."""
    match = _BASE_IMAGE_ARG.search(text)
    if match is None:
        raise ValueError(f"{dockerfile} declares no ARG BASE_IMAGE default")
    return match.group(1)
