"""What each image variant is: its Dockerfile, its tag suffix and the platforms it ships for.

Pure Python, no dagger import. The Dockerfiles are the single source of truth for image
contents; this table only says which one each variant uses.
"""

from __future__ import annotations

from dataclasses import dataclass

AMD64 = "linux/amd64"
ARM64 = "linux/arm64"


@dataclass(frozen=True)
class Variant:
    """One published image flavour."""

    name: str
    dockerfile: str  # path inside the source directory (the build context is the repo root)
    tag_suffix: str  # appended to every tag: 1.2.3-gpu
    platforms: tuple[str, ...]  # the first one is the default build platform


VARIANTS: dict[str, Variant] = {
    # The production CPU image: multi-stage, hashed locks, both architectures.
    "cpu": Variant("cpu", "dockerfiles/Dockerfile.optimized", "", (AMD64, ARM64)),
    # onnxruntime-gpu wheels with CUDA from pip exist for x86_64 only.
    "gpu": Variant("gpu", "dockerfiles/Dockerfile.gpu", "-gpu", (AMD64,)),
}

# The image the unit tests, linters and load generator run in: same base, dev tools on top.
DEV_DOCKERFILE = "dockerfiles/Dockerfile.dev"

# Every Dockerfile in the repo (hadolint lints them all; a test keeps this list in sync).
ALL_DOCKERFILES: tuple[str, ...] = (
    "dockerfiles/Dockerfile.basic",
    "dockerfiles/Dockerfile.optimized",
    "dockerfiles/Dockerfile.gpu",
    DEV_DOCKERFILE,
)
