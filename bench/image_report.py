"""Image report: sizes against the lower bound, cold and warm builds, time to healthy.

    python bench/image_report.py [--variants basic,optimized,gpu] [--no-cold]

Prints a Markdown table. Per image:
- size, and for the optimized image the budget: size <= 1.10 x (base image + installed
  runtime venv), the venv measured inside the image (`du -sb /opt/venv`);
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
import os
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "python:3.11-slim-bookworm"
SIZE_BUDGET = 1.10  # optimized <= 1.10 x (base + runtime venv)
CONTEXT_PATHS = ("service", "models", "requirements", "dockerfiles", ".dockerignore")
DEPENDENCY_STEP = re.compile(r"pip install")


def docker_binary() -> str:
    """Debian's client has BuildKit; the /usr/local one may lack buildx."""
    return (
        "/usr/bin/docker"
        if Path("/usr/bin/docker").exists()
        else shutil.which("docker") or "docker"
    )


def docker(*args: str, timeout: float = 600) -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(
        [docker_binary(), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
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
    base: int
    venv: int  # runtime dependencies as installed in the optimized image
    images: dict[str, int]  # variant -> image size

    @property
    def lower_bound(self) -> int:
        return self.base + self.venv

    def ratio(self, variant: str) -> float:
        return self.images[variant] / self.lower_bound


def measure_sizes(tags: dict[str, str], base: str = BASE_IMAGE) -> Sizes:
    """`tags` maps variant -> image tag; it must include "optimized" (the venv is read there)."""
    return Sizes(
        base=image_bytes(base),
        venv=venv_bytes(tags["optimized"]),
        images={variant: image_bytes(tag) for variant, tag in tags.items()},
    )


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def size_table(sizes: Sizes) -> str:
    rows = [
        "| what | size | x (base + deps) |",
        "|---|---:|---:|",
        f"| base image `{BASE_IMAGE}` | {mb(sizes.base)} | |",
        f"| runtime deps (installed venv) | {mb(sizes.venv)} | |",
        f"| lower bound: base + deps | {mb(sizes.lower_bound)} | 1.00 |",
    ]
    for variant, size in sizes.images.items():
        budget = f" (budget <= {SIZE_BUDGET:.2f})" if variant == "optimized" else ""
        rows.append(f"| {variant} image | {mb(size)} | {sizes.ratio(variant):.2f}{budget} |")
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


def build(context: Path, variant: str, tag: str, no_cache: bool = False) -> Build:
    args = ["build", "--progress=plain", "-f", f"dockerfiles/Dockerfile.{variant}", "-t", tag]
    bundle = Path(os.environ.get("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        args += ["--secret", f"id=ca_bundle,src={bundle}"]
    if no_cache:
        args.append("--no-cache")
    started = time.monotonic()
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(
        [docker_binary(), *args, "."],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
        cwd=context,
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
    docker("run", "-d", "--name", name, "--read-only", "-p", "127.0.0.1::8000", tag)
    try:
        port = docker("port", name, "8000/tcp").split()[0].rsplit(":", 1)[1]
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
def report(variants: list[str], cold: bool) -> str:
    subprocess.run([str(REPO / "scripts/ensure_base_image.sh"), BASE_IMAGE], check=True)
    tags = {variant: f"images-report:{variant}" for variant in variants}
    if "optimized" not in tags:
        tags["optimized"] = "images-report:optimized"
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
                lines.append(
                    f"| {variant} | {cold_s} | {warm.seconds:.1f} s | {warm.short_steps()} | "
                    f"{'yes' if warm.dependencies_cached else 'NO'} | {ready:.1f} s | "
                    f"{healthy:.1f} s |"
                )
        sizes = measure_sizes(tags)
    finally:
        for tag in tags.values():
            subprocess.run([docker_binary(), "rmi", tag], capture_output=True, timeout=120)
    verdict = "within" if sizes.ratio("optimized") <= SIZE_BUDGET else "OVER"
    return (
        "### Image sizes\n\n"
        + size_table(sizes)
        + f"\n\nOptimized image: {sizes.ratio('optimized'):.3f} x lower bound, {verdict} the "
        f"{SIZE_BUDGET:.2f} budget.\n\n### Builds and startup\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--variants",
        default="basic,optimized,gpu",
        help="comma list of basic, optimized, gpu, dev (default: %(default)s)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the --no-cache builds")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - {"basic", "optimized", "gpu", "dev"})
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; expected basic, optimized, gpu, dev")
    print(report(variants, cold=not args.no_cold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
