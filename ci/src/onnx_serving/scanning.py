"""Trivy scans inside the check container, judged by the gate: an image's JSON report (with a
daily-refreshed vulnerability DB unless offline), its CycloneDX SBOM, and `scan_and_gate`,
which fails a call on any finding the gate does not let through. trivy.py builds the command
lines, gate.py gives the verdict."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass

import dagger
import yaml
from dagger import dag

from . import commands, gate, trivy
from .images import IMAGE_UID

TRIVY_CACHE = "/cache/trivy"  # a persistent, LOCKED cache volume: the vulnerability DB
SCAN_DIR = "/scan"


@dataclass(frozen=True)
class SeverityGate:
    """The gate's threshold and ignore list, fixed for one call; `offline` scans without the
    vulnerability DB."""

    severities: frozenset[str]
    ignore_unfixed: bool
    ignores: list[gate.IgnoreEntry]
    today: dt.date
    offline: bool = False

    def verdict(self, report: str, artifact: str) -> gate.Verdict:
        return gate.evaluate(
            json.loads(report),
            severities=self.severities,
            ignore_unfixed=self.ignore_unfixed,
            ignores=self.ignores,
            today=self.today,
            artifact=artifact,
        )


async def severity_gate(
    source: dagger.Directory,
    severity: gate.Severity | str,
    ignore_unfixed: bool,
    offline: bool,
) -> SeverityGate:
    """The gate's settings, checked before anything is built: threshold and ignore file."""
    severities = gate.severities_at_least(severity)
    ignores = gate.parse_ignore_entries(
        yaml.safe_load(await source.file(".trivyignore.yaml").contents())
    )
    return SeverityGate(severities, ignore_unfixed, ignores, dt.date.today(), offline)


def with_image_tarball(checker: dagger.Container, image: dagger.Container) -> dagger.Container:
    """The image's tarball in SCAN_DIR, both owned by the check container's user: a mount
    point's missing parent would be created root-owned (reports are written beside it), and
    the engine writes a tarball root-owned with mode 0600."""
    owner = str(IMAGE_UID)
    return checker.with_directory(SCAN_DIR, dag.directory(), owner=owner).with_mounted_file(
        f"{SCAN_DIR}/image.tar", image.as_tarball(), owner=owner
    )


async def trivy_report(
    checker: dagger.Container, image: dagger.Container, judge: SeverityGate
) -> str:
    """Trivy's JSON report on `image`, with a fresh-today vulnerability DB from a cache volume
    (offline: the DB-free scanners only)."""
    report_path = f"{SCAN_DIR}/report.json"
    scanners = trivy.OFFLINE_SCANNERS if judge.offline else ("vuln", *trivy.OFFLINE_SCANNERS)
    command = trivy.image_scan_command(
        f"{SCAN_DIR}/image.tar", report_path, scanners=scanners, cache_dir=TRIVY_CACHE
    )
    scanner = with_image_tarball(checker, image).with_mounted_cache(
        TRIVY_CACHE,
        dag.cache_volume("onnx-serving-trivy-db"),
        sharing=dagger.CacheSharingMode.LOCKED,
        owner=str(IMAGE_UID),
    )
    if not judge.offline:
        # The date busts the exec cache once a day, so the DB download re-runs daily.
        scanner = scanner.with_env_variable("TRIVY_DB_DAY", judge.today.isoformat()).with_exec(
            commands.trivy_db_command(TRIVY_CACHE)
        )
    return await scanner.with_exec(command).file(report_path).contents()


async def scan_and_gate(
    checker: dagger.Container, images: dict[str, dagger.Container], judge: SeverityGate
) -> str:
    """Scan every image (concurrently) and judge it; raises with every finding on a FAIL."""
    reports = await asyncio.gather(
        *(trivy_report(checker, image, judge) for image in images.values())
    )
    verdicts = [judge.verdict(r, name) for name, r in zip(images, reports, strict=True)]
    summary = "\n".join(verdict.report() for verdict in verdicts)
    if judge.offline:
        summary += "\nvulnerabilities NOT scanned (--offline-scan): misconfig, secret, license only"
    if not all(verdict.passed for verdict in verdicts):
        raise RuntimeError(summary)
    return summary


def image_sbom(checker: dagger.Container, image: dagger.Container) -> dagger.File:
    """The image's CycloneDX SBOM (JSON), written by Trivy in the check container."""
    sbom_path = f"{SCAN_DIR}/sbom.cdx.json"
    return (
        with_image_tarball(checker, image)
        # Trivy needs a cache folder it can write: the check user's HOME (/nonexistent) is none.
        .with_exec(
            trivy.sbom_command(f"{SCAN_DIR}/image.tar", sbom_path, cache_dir=f"{SCAN_DIR}/cache")
        )
        .file(sbom_path)
    )
