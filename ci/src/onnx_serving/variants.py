"""The variant table: every image this repository builds, and everything that differs between
them. Everything that needs variants reads this table: the Dagger functions (the `Variant`
enum is their `--variant` argument), scripts/, scripts/lock.sh, tests/images, bench/,
the compose and workflow checks, the deploy manifests and the docs' size table.

Adding a variant: a member of `Variant`, a row in `VARIANTS`, the Dockerfile target it names,
and its lock if it needs a new one; a published row also states how its pods are sized
(tests/pipeline/test_pipeline_variants.py shows what picks a new row up). A row's lock is not
restated here: it is read from the Dockerfile that installs it. Pure Python, no dagger import:
scripts run it with a plain `python3`.

    python3 -m onnx_serving.variants [locks]    # the table, or each lock with its platforms
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

AMD64 = "linux/amd64"
ARM64 = "linux/arm64"

# The one multi-target Dockerfile (targets cpu, gpu, dev) and the single-stage baseline.
DOCKERFILE = "dockerfiles/Dockerfile"
BASIC_DOCKERFILE = "dockerfiles/Dockerfile.basic"
ALL_DOCKERFILES: tuple[str, ...] = (DOCKERFILE, BASIC_DOCKERFILE)

LOCAL_REPOSITORY = "onnx-serving"  # local tags: onnx-serving:<variant>

# The checkout this file lives in (ci/src/onnx_serving/): the build context the Dockerfile
# paths are relative to. Read only for `VariantSpec.lock`, which the image builds never need.
REPO_ROOT = Path(__file__).resolve().parents[3]


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


@dataclass(frozen=True, kw_only=True)
class PodSizing:
    """How a published variant's pods are sized in its deploy manifests (onnx_serving.deploy).
    CPU is whole cores: the server sizes its ONNX Runtime threads from the container's CPU
    limit (cgroup quota, rounded down)."""

    cpu: int
    memory: str
    gpus: int
    startup_s: int  # how long the startup probe lets models (and CUDA) load
    min_replicas: int
    max_replicas: int
    max_surge: int
    max_unavailable: int
    kserve_concurrency: int  # in-flight requests per pod Knative scales at


@dataclass(frozen=True, kw_only=True)
class VariantSpec:
    """One row of the table."""

    dockerfile: str  # path in the build context (the repository root)
    target: str  # Dockerfile stage to build; "" for a single-stage file
    tag_suffix: str  # appended to every published tag: 1.2.3-gpu
    platforms: tuple[str, ...]  # the first is the default when only one is possible
    published: bool  # pushed by `publish`, scanned weekly, deployed by the manifests
    description: str
    sizing: PodSizing | None = None  # its pods in the deploy manifests: required if published

    @property
    def lock(self) -> str:
        """The hashed lock its venv is installed from (scripts/lock.sh writes it), as the
        Dockerfile states it."""
        return self.lock_in(REPO_ROOT)

    def lock_in(self, root: Path) -> str:
        """`lock` as the Dockerfile under `root` (a checkout) states it."""
        text = (root / self.dockerfile).read_text(encoding="utf-8")
        return dockerfile_lock(self.dockerfile, self.target, text)


# A venv stage binds its lock here for the builder script (dockerfiles/Dockerfile).
_LOCK_MOUNT = re.compile(r"--mount=type=bind,source=(\S+?),target=/tmp/requirements\.lock\b")
# The venv a final stage copies in, and a single-stage file's own install (Dockerfile.basic).
_VENV_COPY = re.compile(r"^COPY --from=(\S+) /opt/venv ", re.MULTILINE)
_PIP_INSTALL = re.compile(r"\bpip install -r (\S+\.lock)\b")
_FROM = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.MULTILINE | re.IGNORECASE)


def dockerfile_lock(dockerfile: str, target: str, text: str) -> str:
    """The lock that `target` of a Dockerfile's `text` installs: the lock bind-mounted by the
    venv stage the target copies /opt/venv from; for a single-stage file, its
    `pip install -r`. Raises a ValueError naming the file unless exactly one is found."""
    if not target:
        return _one(_PIP_INSTALL.findall(text), dockerfile, "pip install -r <lock>")
    starts = list(_FROM.finditer(text))
    stages = {
        m[2]: (m[1], text[m.end() : nxt.start() if nxt else len(text)])
        for m, nxt in zip(starts, [*starts[1:], None], strict=True)
        if m[2]
    }
    name, seen = target, set()
    # Follow the venv copy (or the base stage) until a stage mounts a lock.
    while name in stages and name not in seen:
        seen.add(name)
        base, body = stages[name]
        mounts = _LOCK_MOUNT.findall(body)
        if mounts:
            return _one(mounts, dockerfile, f"lock mount of stage {name!r}")
        copied = _VENV_COPY.search(body)
        name = copied[1] if copied else base
    raise ValueError(f"{dockerfile}: target {target!r} installs no lock (no venv stage found)")


def _one(found: list[str], dockerfile: str, what: str) -> str:
    if len(set(found)) != 1:
        raise ValueError(f"{dockerfile}: expected one {what}, found {found}")
    return found[0]


VARIANTS: dict[Variant, VariantSpec] = {
    Variant.cpu: VariantSpec(
        dockerfile=DOCKERFILE,
        target="cpu",
        tag_suffix="",
        platforms=(AMD64, ARM64),
        published=True,
        description=(
            "production CPU image: multi-stage, hashed lock, no pip (linux/amd64, linux/arm64)"
        ),
        sizing=PodSizing(
            cpu=2,
            memory="1Gi",
            gpus=0,
            startup_s=60,
            min_replicas=2,
            max_replicas=10,
            max_surge=1,
            max_unavailable=0,
            kserve_concurrency=8,
        ),
    ),
    Variant.gpu: VariantSpec(
        dockerfile=DOCKERFILE,
        target="gpu",
        tag_suffix="-gpu",
        # onnxruntime-gpu and the CUDA wheels exist for x86_64 only.
        platforms=(AMD64,),
        published=True,
        description=(
            "production GPU image: onnxruntime-gpu with CUDA 12 / cuDNN 9 wheels (linux/amd64)"
        ),
        sizing=PodSizing(
            cpu=4,
            memory="8Gi",
            gpus=1,
            startup_s=300,
            min_replicas=1,
            max_replicas=4,
            # GPUs are scarce: a rollout replaces pods in place instead of needing a spare GPU.
            max_surge=0,
            max_unavailable=1,
            kserve_concurrency=16,
        ),
    ),
    Variant.dev: VariantSpec(
        dockerfile=DOCKERFILE,
        target="dev",
        tag_suffix="-dev",
        platforms=(AMD64, ARM64),
        published=False,
        description=(
            "development image: test and lint tools, restarts the server when service/ changes"
        ),
    ),
    Variant.basic: VariantSpec(
        dockerfile=BASIC_DOCKERFILE,
        target="",
        tag_suffix="-basic",
        platforms=(AMD64, ARM64),
        published=False,
        description="single-stage baseline the optimized cpu image is measured against",
    ),
}


def check_table(table: Mapping[Variant, VariantSpec]) -> None:
    """A published variant is deployed: refuse a published row without its pod sizing."""
    for variant, spec in table.items():
        if spec.published and spec.sizing is None:
            raise ValueError(
                f"variant {variant.value!r} is published but has no sizing: give its row "
                "sizing=PodSizing(...) (its pods in the deploy manifests)"
            )


check_table(VARIANTS)

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
        spec = variant.spec
        row = {"lock": spec.lock, **asdict(spec), "local_tag": variant.local_tag}
        print(variant.value, " ".join(f"{k}={v!r}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
