"""Read an image's filesystem the way a registry stores it: `docker save`, layer by layer.

Streams the archive (no temp copy: the GPU image is ~3 GB) and reports every file whose path
or content matches, in every layer, including files deleted by later layers (whiteouts hide
them at run time, but they still ship in the image).
"""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    layer: str
    path: str
    reason: str


def _contains(stream: IO[bytes], needles: tuple[bytes, ...]) -> bytes | None:
    """The first needle found in the stream, reading in chunks that overlap by the needle."""
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    while chunk := stream.read(CHUNK):
        window = tail + chunk
        for needle in needles:
            if needle in window:
                return needle
        tail = window[-overlap:] if overlap else b""
    return None


def scan_tar(
    archive: IO[bytes], layer: str, needles: tuple[bytes, ...], path_parts: tuple[str, ...]
) -> list[Finding]:
    """Findings in one (uncompressed, streamed) layer tar."""
    findings: list[Finding] = []
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            hit = [part for part in path_parts if part in path.split("/")]
            if hit:
                findings.append(Finding(layer, path, f"path component {hit[0]!r}"))
            if member.isfile():
                content = tar.extractfile(member)
                assert content is not None
                needle = _contains(content, needles)
                if needle is not None:
                    findings.append(Finding(layer, path, f"contains {needle.decode()!r}"))
    return findings


def scan_image(
    docker: str, image: str, needles: Iterable[bytes], path_parts: Iterable[str]
) -> tuple[list[Finding], int]:
    """Scan every layer and the config of `image`; return (findings, layers scanned)."""
    needle_tuple, part_tuple = tuple(needles), tuple(path_parts)
    findings: list[Finding] = []
    layers = 0
    with subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                if not member.isfile():
                    continue
                content = outer.extractfile(member)
                assert content is not None
                if member.name.endswith("layer.tar"):
                    layers += 1
                    findings += scan_tar(content, member.name, needle_tuple, part_tuple)
                else:  # image config and manifest JSON: env, labels, history
                    needle = _contains(content, needle_tuple)
                    if needle is not None:
                        findings.append(Finding("-", member.name, f"contains {needle.decode()!r}"))
    if proc.returncode != 0:
        raise RuntimeError(f"docker save {image} exited {proc.returncode}")
    return findings, layers
