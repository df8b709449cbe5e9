"""Image report: sizes against the lower bound, cold and warm builds, time to healthy.

    python bench/image_report.py [--variants basic,cpu,gpu,dev] [--no-cold] [--json PATH]

Prints a Markdown table; `--json` also writes the measurement the docs' size tables are
generated from (bench/results/images.json, read by scripts/docs_tables.py).

Per variant of the table (ci/src/onnx_serving/variants.py):
- size, and for the cpu image the budget: size <= 1.10 x (base image + installed runtime
  venv), the venv measured inside the image (`du -sb /opt/venv`);
- cold build (`--no-cache`; the pip download cache mount survives, as on a CI runner with a
  warm BuildKit cache) and rebuild after a change to service code only, with the list of
  steps BuildKit re-ran: the dependency step must be CACHED;
- `docker run` -> ready (first 200 from /v2/health/ready on the published port) and
  -> Docker `healthy` (quantized by the HEALTHCHECK interval, 5 s).

Stdlib only; talks to containers through 127.0.0.1 only. Images and containers it creates are
named `images-report-*` and removed at the end. Timings are wall clock on this machine: read
them side by side, as ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onnx_serving import docker_cli
from onnx_serving.base_images import local_stand_in
from onnx_serving.images import CONTAINER_PORT, ImageMetadata
from onnx_serving.local import base_image, ca_bundle
from onnx_serving.variants import Variant

REPO = Path(__file__).resolve().parents[1]
SIZE_BUDGET = 1.10  # cpu <= 1.10 x (base + runtime venv)
BUDGETED = Variant.cpu
BASELINE = Variant.basic  # the naive single-stage image the exercise starts from
CUT_GOAL = 0.60  # cpu at least 60% smaller than basic
CONTEXT_PATHS = ("service", "models", "requirements", "dockerfiles", ".dockerignore")
DEPENDENCY_STEP = re.compile(r"pip install|build-venv")


def docker_binary() -> str:
    return docker_cli.docker_binary() or "docker"


def docker(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [docker_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=docker_cli.docker_env(),
        cwd=REPO,
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
    return result.stdout + result.stderr


# ---- sizes -------------------------------------------------------------------------------
def image_bytes(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).strip())


def venv_bytes(tag: str) -> int:
    """Installed size of the runtime venv inside the image (the dependency lower bound)."""
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "du", tag, "-sb", "/opt/venv")
    return int(out.split()[0])


@dataclass(frozen=True)
class Sizes:
    base: int  # the budgeted variant's base image
    venv: int  # runtime dependencies as installed in the budgeted image
    images: dict[Variant, int]

    @property
    def lower_bound(self) -> int:
        return self.base + self.venv

    def ratio(self, variant: Variant) -> float:
        return self.images[variant] / self.lower_bound

    def cut(self, variant: Variant) -> float:
        """How much smaller than the naive basic image (0.6 = 60% smaller)."""
        return 1 - self.images[variant] / self.images[BASELINE]


def measure_sizes(tags: dict[Variant, str]) -> Sizes:
    """`tags` maps variant -> image tag; it must include the budgeted cpu variant."""
    return Sizes(
        base=image_bytes(base_image(BUDGETED)),
        venv=venv_bytes(tags[BUDGETED]),
        images={variant: image_bytes(tag) for variant, tag in tags.items()},
    )


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def size_table(sizes: Sizes) -> str:
    """Sizes against the lower bound, and each image's cut against the naive basic one."""
    baseline = sizes.images.get(BASELINE)
    rows = [
        f"| what | size | x (base + deps) | cut vs {BASELINE} |",
        "|---|---:|---:|---:|",
        f"| base image `{base_image(BUDGETED)}` | {mb(sizes.base)} | | |",
        f"| runtime deps (installed venv) | {mb(sizes.venv)} | | |",
        f"| lower bound: base + deps | {mb(sizes.lower_bound)} | 1.00 | |",
    ]
    for variant, size in sizes.images.items():
        budget = f" (budget <= {SIZE_BUDGET:.2f})" if variant is BUDGETED else ""
        cut = ""
        if baseline and variant is not BASELINE:  # the GPU image's CUDA libraries outweigh it
            cut = f"{sizes.cut(variant):.0%}" if sizes.cut(variant) >= 0 else "none (larger)"
        rows.append(
            f"| {variant} image | {mb(size)} | {sizes.ratio(variant):.2f}{budget} | {cut} |"
        )
    return "\n".join(rows)


# ---- builds ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    seconds: float
    rerun_steps: list[str]  # steps BuildKit executed (not CACHED)

    def short_steps(self) -> str:
        """`COPY service/ /app/service/; RUN python3 -m compileall …` for the table."""
        short = [re.sub(r"^\[[^]]*\] ", "", step)[:36] for step in self.rerun_steps]
        return "; ".join(f"`{s}`" for s in short) or "none"

    @property
    def dependencies_cached(self) -> bool:
        return not any(DEPENDENCY_STEP.search(step) for step in self.rerun_steps)


def parse_plain_progress(log: str) -> list[str]:
    """Names of the Dockerfile steps that ran, from `--progress=plain` output."""
    names: dict[str, str] = {}
    cached: set[str] = set()
    done: set[str] = set()
    for line in log.splitlines():
        match = re.match(r"#(\d+) (.*)", line)
        if not match:
            continue
        step, text = match.groups()
        # FROM lines report DONE even when nothing changed (they only resolve the image).
        is_step = text.startswith("[") and "internal]" not in text and "] FROM " not in text
        if is_step and step not in names:
            names[step] = text
        elif text == "CACHED":
            cached.add(step)
        elif text.startswith("DONE"):
            done.add(step)
    return [name for step, name in names.items() if step in done and step not in cached]


def build(context: Path, variant: Variant, tag: str, no_cache: bool = False) -> Build:
    command = docker_cli.build_command(
        docker_binary(),
        variant,
        tag,
        ImageMetadata(),
        ca_bundle=ca_bundle(),
        context=str(context),
        no_cache=no_cache,
    )
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=3600, env=docker_cli.docker_env()
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"build {variant} failed:\n{result.stderr[-3000:]}")
    return Build(seconds, parse_plain_progress(result.stderr))


@contextmanager
def context_copy() -> Iterator[Path]:
    """A private copy of the build context, so a code edit never touches the checkout."""
    with tempfile.TemporaryDirectory(prefix="images-report-") as tmp:
        root = Path(tmp)
        for name in CONTEXT_PATHS:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, root / name)
        yield root


def edit_service_code(context: Path) -> None:
    init = context / "service" / "__init__.py"
    init.write_text(init.read_text() + f"\n# image_report edit {uuid.uuid4().hex}\n")


# ---- startup -----------------------------------------------------------------------------
def time_to_ready(tag: str, timeout_s: float = 180) -> tuple[float, float]:
    """Seconds from `docker run` to the first ready 200, and to Docker's `healthy`."""
    name = f"images-report-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    docker(*docker_cli.run_command(docker_binary(), tag, name)[1:])
    try:
        port = docker("port", name, f"{CONTAINER_PORT}/tcp").split()[0].rsplit(":", 1)[1]
        ready = healthy = None
        while time.monotonic() - started < timeout_s and healthy is None:
            now = time.monotonic() - started
            if ready is None:
                try:
                    url = f"http://127.0.0.1:{port}/v2/health/ready"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            ready = now
                except (urllib.error.URLError, OSError):
                    pass
            if docker("inspect", "-f", "{{.State.Health.Status}}", name).strip() == "healthy":
                healthy = now
            time.sleep(0.1)
        if ready is None or healthy is None:
            raise RuntimeError(f"{tag} not ready/healthy within {timeout_s}s")
        return ready, healthy
    finally:
        docker("rm", "-f", name)


# ---- report ------------------------------------------------------------------------------
def report(variants: list[Variant], cold: bool) -> tuple[str, dict[str, Any]]:
    """The Markdown report, and the same numbers as a measurement record."""
    for base in sorted({base_image(v) for v in [*variants, BUDGETED]}):
        subprocess.run([str(REPO / "scripts/ensure_image.sh"), base], check=True)
    tags = {variant: f"images-report:{variant}" for variant in [*variants, BUDGETED]}
    builds: dict[str, dict[str, Any]] = {}
    lines = [
        "| image | cold build | rebuild after code edit | steps re-run by it | deps cached | "
        "run -> ready | run -> healthy |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    try:
        with context_copy() as context:
            cold_builds = {v: build(context, v, tag, no_cache=cold) for v, tag in tags.items()}
            edit_service_code(context)
            for variant, tag in tags.items():
                warm = build(context, variant, tag)
                ready, healthy = time_to_ready(tag)
                cold_s = f"{cold_builds[variant].seconds:.0f} s" if cold else "-"
                builds[variant.value] = {
                    "cold_build_s": round(cold_builds[variant].seconds, 1) if cold else None,
                    "rebuild_s": round(warm.seconds, 1),
                    "dependencies_cached": warm.dependencies_cached,
                    "ready_s": round(ready, 1),
                    "healthy_s": round(healthy, 1),
                }
                lines.append(
                    f"| {variant} | {cold_s} | {warm.seconds:.1f} s | {warm.short_steps()} | "
                    f"{'yes' if warm.dependencies_cached else 'NO'} | {ready:.1f} s | "
                    f"{healthy:.1f} s |"
                )
        sizes = measure_sizes(tags)
    finally:
        for tag in tags.values():
            subprocess.run([docker_binary(), "rmi", tag], capture_output=True, timeout=120)
    verdict = "within" if sizes.ratio(BUDGETED) <= SIZE_BUDGET else "OVER"
    cut = (
        f" {sizes.cut(BUDGETED):.0%} smaller than {BASELINE} (goal >= {CUT_GOAL:.0%})."
        if BASELINE in sizes.images
        else ""
    )
    text = (
        "### Image sizes\n\n"
        + size_table(sizes)
        + f"\n\n{BUDGETED} image: {sizes.ratio(BUDGETED):.3f} x lower bound, {verdict} the "
        f"{SIZE_BUDGET:.2f} budget;{cut}\n\n### Builds and startup\n\n" + "\n".join(lines) + "\n"
    )
    return text, measurement_record(sizes, builds)


def measurement_record(sizes: Sizes, builds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What bench/results/images.json holds: when, on what engine and base, and the bytes."""
    base = base_image(BUDGETED)
    return {
        "measured_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "docker": docker("version", "--format", "{{.Server.Version}}").strip(),
        "base_image": base,
        "base_is_stand_in": local_stand_in(docker_binary(), base)[1],
        "base_bytes": sizes.base,
        "venv_bytes": sizes.venv,
        "image_bytes": {variant.value: size for variant, size in sizes.images.items()},
        "builds": builds,
    }


def variant_list(text: str) -> list[Variant]:
    """`basic,cpu` -> the variants of the table, or a usage error naming the unknown ones."""
    chosen = [name for name in text.split(",") if name]
    unknown = sorted(set(chosen) - {v.value for v in Variant})
    if unknown or not chosen:
        names = ", ".join(v.value for v in Variant)
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; expected {names}")
    return [Variant(name) for name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--variants",
        type=variant_list,
        default="basic,cpu,gpu",
        help=f"comma list of {', '.join(v.value for v in Variant)} (default: %(default)s)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the --no-cache builds")
    parser.add_argument("--json", type=Path, help="also write the measurement record here")
    args = parser.parse_args(argv)
    text, record = report(args.variants, cold=not args.no_cold)
    print(text)
    if args.json:
        record["command"] = "python bench/image_report.py " + " ".join(argv or sys.argv[1:])
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
