"""The variant table: every image this repository builds, and everything that differs between
them. Everything that needs variants reads this table: the Dagger functions (the `Variant`
enum is their `--variant` argument), scripts/, scripts/lock.sh, tests/images, bench/,
the compose and workflow checks and the docs' size table.

Adding a variant: a member of `Variant`, a row in `VARIANTS`, the Dockerfile target it names,
and its lock if it needs a new one (tests/pipeline/test_pipeline_variants.py shows what
picks a new row up). Pure Python, no dagger import: scripts run it with a plain `python3`.

    python3 -m onnx_serving.variants [locks]    # the table, or each lock with its platforms
"""

from __future__ import annotations

import enum
import sys
from dataclasses import asdict, dataclass

AMD64 = "linux/amd64"
ARM64 = "linux/arm64"

# The one multi-target Dockerfile (targets cpu, gpu, dev) and the single-stage baseline.
DOCKERFILE = "dockerfiles/Dockerfile"
BASIC_DOCKERFILE = "dockerfiles/Dockerfile.basic"
ALL_DOCKERFILES: tuple[str, ...] = (DOCKERFILE, BASIC_DOCKERFILE)

LOCAL_REPOSITORY = "onnx-serving"  # local tags: onnx-serving:<variant>


class Variant(enum.Enum):
    """An image variant (docs/DOCKERFILE_GUIDE.md)."""

    cpu = "cpu"
    gpu = "gpu"
    dev = "dev"
    basic = "basic"

    def __str__(self) -> str:
        return self.value

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self]

    @property
    def description(self) -> str:
        """What `dagger call ... --help` shows for this choice."""
        return self.spec.description

    @property
    def local_tag(self) -> str:
        """`onnx-serving:<variant>`: what scripts/ and compose build locally."""
        return f"{LOCAL_REPOSITORY}:{self.value}"


@dataclass(frozen=True)
class VariantSpec:
    """One row of the table."""

    dockerfile: str  # path in the build context (the repository root)
    target: str  # Dockerfile stage to build; "" for a single-stage file
    lock: str  # the hashed lock its venv is installed from (scripts/lock.sh writes it)
    tag_suffix: str  # appended to every published tag: 1.2.3-gpu
    platforms: tuple[str, ...]  # the first is the default when only one is possible
    published: bool  # pushed by `publish`, scanned weekly
    description: str


VARIANTS: dict[Variant, VariantSpec] = {
    Variant.cpu: VariantSpec(
        DOCKERFILE,
        "cpu",
        "requirements/runtime.lock",
        "",
        (AMD64, ARM64),
        True,
        "production CPU image: multi-stage, hashed lock, no pip (linux/amd64, linux/arm64)",
    ),
    Variant.gpu: VariantSpec(
        DOCKERFILE,
        "gpu",
        "requirements/gpu.lock",
        "-gpu",
        # onnxruntime-gpu and the CUDA wheels exist for x86_64 only.
        (AMD64,),
        True,
        "production GPU image: onnxruntime-gpu with CUDA 12 / cuDNN 9 wheels (linux/amd64)",
    ),
    Variant.dev: VariantSpec(
        DOCKERFILE,
        "dev",
        "requirements/dev.lock",
        "-dev",
        (AMD64, ARM64),
        False,
        "development image: test and lint tools, restarts the server when service/ changes",
    ),
    Variant.basic: VariantSpec(
        BASIC_DOCKERFILE,
        "",
        "requirements/runtime.lock",
        "-basic",
        (AMD64, ARM64),
        False,
        "single-stage baseline the optimized cpu image is measured against",
    ),
}

PUBLISHED: tuple[Variant, ...] = tuple(v for v in Variant if v.spec.published)


def lock_platforms() -> dict[str, tuple[str, ...]]:
    """Each lock, with every platform an image installing it is built for."""
    platforms: dict[str, tuple[str, ...]] = {}
    for spec in VARIANTS.values():
        known = platforms.get(spec.lock, ())
        platforms[spec.lock] = known + tuple(p for p in spec.platforms if p not in known)
    return platforms


def main(argv: list[str]) -> int:
    """`variants` prints the table; `variants locks` each lock with its platforms."""
    if argv == ["locks"]:
        for lock, platforms in lock_platforms().items():
            print(lock, *platforms)
        return 0
    if argv:
        print(f"usage: python3 -m onnx_serving.variants [locks], not {argv}", file=sys.stderr)
        return 2
    for variant in Variant:
        row = {**asdict(variant.spec), "local_tag": variant.local_tag}
        print(variant.value, " ".join(f"{k}={v!r}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
