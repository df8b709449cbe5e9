"""One command per security scan, with the pinned scanners of .venv (./scripts/dev_env.sh) and
the same command lines and gate as `dagger call scan|sbom|lint` and tests/security.

  scripts/scan.sh fs                  # Trivy misconfig+secret+license on the repo, gated
  scripts/scan.sh image TAG           # the same on a local image (docker save), gated
  scripts/scan.sh sbom TAG [OUT]      # CycloneDX SBOM of a local image (default: below)
  scripts/scan.sh dockerfiles         # hadolint on every Dockerfile (variants.ALL_DOCKERFILES)
  scripts/scan.sh workflows           # zizmor --offline on .github (workflows, dependabot)

Gate options (env; the defaults are the pipeline's: gate.DEFAULT_SEVERITIES and
trivy.OFFLINE_SCANNERS): SEVERITY (e.g. MEDIUM,HIGH,CRITICAL), IGNORE_UNFIXED=1, SCANNERS (add
vuln where a Trivy DB is in TRIVY_CACHE_DIR). Reports land in $SCAN_OUT (default
$TMPDIR/onnx-serving-scan): repo.trivy.json, <IMAGE>.trivy.json and the SBOM's default
<IMAGE>.cdx.json, where <IMAGE> is TAG with each of / : @ as _ (onnx-serving:cpu ->
onnx-serving_cpu). The scanners are those of $VENV (default the checkout's .venv).
Exit: 0 pass, 1 findings, 2 bad usage or input (or a scanner that failed to run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import commands, docker_cli, gate, trivy
from .variants import ALL_DOCKERFILES

REPO = Path(__file__).resolve().parents[3]
IGNORE_FILE = ".trivyignore.yaml"
# zizmor exits 10 + the highest severity found (11-14) on findings, 1 when it fails to run.
_ZIZMOR_FINDINGS = range(10, 15)


class ScanError(Exception):
    """The scan cannot run or could not finish: bad input, a missing image, a failed tool."""


@dataclass(frozen=True)
class Settings:
    """The environment options of scripts/scan.sh, read once and checked before any scan."""

    tools: Path  # the virtualenv's bin/: trivy, hadolint, zizmor
    out: Path  # where reports, the repo copy and image tarballs go
    cache: Path  # Trivy's cache (a vulnerability DB there enables SCANNERS=vuln,…)
    severity: str
    ignore_unfixed: bool
    scanners: tuple[str, ...]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        home_cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        scanners = env.get("SCANNERS", "")
        return cls(
            tools=Path(env.get("VENV") or REPO / ".venv") / "bin",
            out=Path(
                env.get("SCAN_OUT") or Path(env.get("TMPDIR") or "/tmp") / "onnx-serving-scan"
            ),
            cache=Path(env.get("TRIVY_CACHE_DIR") or home_cache / "onnx-serving-trivy"),
            severity=env.get("SEVERITY") or gate.DEFAULT_SEVERITIES,
            ignore_unfixed=env.get("IGNORE_UNFIXED", "0") == "1",
            scanners=tuple(scanners.split(",")) if scanners else trivy.OFFLINE_SCANNERS,
        )

    def tool(self, name: str) -> str:
        return str(self.tools / name)

    def gate_options(self) -> list[str]:
        """`python -m onnx_serving.gate` options; a bad threshold or ignore file fails here,
        before a long scan."""
        gate.parse_severities(self.severity)
        gate.load_ignore_file(REPO / IGNORE_FILE)
        options = ["--ignorefile", str(REPO / IGNORE_FILE), "--severity", self.severity]
        return options + ["--ignore-unfixed"] * self.ignore_unfixed


def file_name(tag: str) -> str:
    """An image tag as a file name: `example/img:1` -> `example_img_1`."""
    return re.sub("[/:@]", "_", tag)


def _run(command: Sequence[str], cwd: Path | None = None) -> int:
    sys.stdout.flush()  # this process's lines stay in order with the tool's
    try:
        return subprocess.run(command, cwd=cwd, check=False).returncode
    except OSError as exc:
        raise ScanError(f"could not run {command[0]}: {exc}") from None


def _trivy(command: Sequence[str]) -> None:
    # Trivy runs with --exit-code 0: anything else is Trivy failing, not a finding.
    code = _run(command)
    if code != 0:
        raise ScanError(f"trivy failed (exit {code}): {' '.join(command)}")


def gated_scan(options: list[str], command: Sequence[str], report: Path) -> int:
    """Run a Trivy JSON scan that writes `report`, then the gate on it: 0 pass, 1 findings."""
    _trivy(command)
    return gate.main([str(report), *options])


def repo_files() -> list[str]:
    """What git would commit (tracked + untracked, not ignored): the repo as a fresh clone
    sees it, without local caches, virtualenvs and downloads. Outside a git checkout: every
    regular file but .venv's."""
    if not (REPO / ".git").exists():
        return sorted(
            os.path.relpath(Path(folder, name), REPO)
            for folder, _, names in os.walk(REPO)
            for name in names
            if Path(folder, name).is_file()
            and not Path(folder, name).is_symlink()
            and Path(folder).relative_to(REPO).parts[:1] != (".venv",)
        )
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        raise ScanError(f"git ls-files failed: {listed.stderr.decode(errors='replace').strip()}")
    return [name for name in listed.stdout.decode().split("\0") if name]


def copy_repo(tree: Path) -> None:
    """A fresh copy of `repo_files()` at `tree`; files listed but deleted are skipped."""
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for name in repo_files():
        source, target = REPO / name, tree / name
        if not source.is_symlink() and not source.exists():
            continue  # tracked, deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and not source.is_symlink():  # a submodule: its files
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target, follow_symlinks=False)


def scan_repo(settings: Settings) -> int:
    tree, report = settings.out / "repo", settings.out / "repo.trivy.json"
    report.unlink(missing_ok=True)  # the gate must never judge a report of an earlier run
    options = settings.gate_options()
    copy_repo(tree)
    command = trivy.fs_scan_command(
        str(tree),
        str(report),
        scanners=settings.scanners,
        trivy=settings.tool("trivy"),
        cache_dir=str(settings.cache),
    )
    return gated_scan(options, command, report)


def save_image(tag: str, tarball: Path) -> None:
    """`docker save` a local image to `tarball`."""
    docker = docker_cli.docker_binary() or "docker"
    found = subprocess.run([docker, "image", "inspect", tag], capture_output=True, check=False)
    if found.returncode != 0:
        raise ScanError(f"no local image '{tag}' (build it first)")
    if _run([docker, "save", "-o", str(tarball), tag]) != 0:
        raise ScanError(f"docker save of '{tag}' failed")


def scan_image(settings: Settings, tag: str) -> int:
    tarball = settings.out / f"{file_name(tag)}.tar"
    report = tarball.with_suffix(".trivy.json")
    report.unlink(missing_ok=True)  # the gate must never judge a report of an earlier run
    options = settings.gate_options()
    try:
        save_image(tag, tarball)
        command = trivy.image_scan_command(
            str(tarball),
            str(report),
            scanners=settings.scanners,
            trivy=settings.tool("trivy"),
            cache_dir=str(settings.cache),
        )
        return gated_scan(options, command, report)
    finally:
        tarball.unlink(missing_ok=True)


def write_sbom(settings: Settings, tag: str, out: str | None = None) -> int:
    tarball = settings.out / f"{file_name(tag)}.tar"
    sbom = Path(out) if out else tarball.with_suffix(".cdx.json")
    sbom.unlink(missing_ok=True)
    try:
        save_image(tag, tarball)
        _trivy(
            trivy.sbom_command(
                str(tarball), str(sbom), trivy=settings.tool("trivy"), cache_dir=str(settings.cache)
            )
        )
    finally:
        tarball.unlink(missing_ok=True)
    if not sbom.is_file() or sbom.stat().st_size == 0:
        raise ScanError(f"trivy wrote no SBOM to {sbom}")
    print(f"scan: CycloneDX SBOM of {tag} written to {sbom}")
    return 0


def lint_dockerfiles(settings: Settings) -> int:
    command = commands.hadolint_command(list(ALL_DOCKERFILES), hadolint=settings.tool("hadolint"))
    code = _run(command, cwd=REPO)
    if code == 0:
        print("scan: hadolint clean on the Dockerfiles")
    return 0 if code == 0 else 1  # hadolint exits 1 on findings


def audit_workflows(settings: Settings) -> int:
    code = _run(commands.zizmor_command(zizmor=settings.tool("zizmor")), cwd=REPO)
    if code == 0 or code in _ZIZMOR_FINDINGS:
        return 0 if code == 0 else 1
    raise ScanError(f"zizmor failed (exit {code})")


# Each command's count of arguments: (fewest, most).
_ARITY = {"fs": (0, 0), "image": (1, 1), "sbom": (1, 2), "dockerfiles": (0, 0), "workflows": (0, 0)}


def usage() -> int:
    print(__doc__, file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command in ("-h", "--help"):
        print(__doc__)
        return 0
    low, high = _ARITY.get(command, (-1, -1))
    if not low <= len(rest) <= high or not all(rest):
        return usage()
    try:
        settings = Settings.from_env(env)
        settings.out.mkdir(parents=True, exist_ok=True)
        settings.cache.mkdir(parents=True, exist_ok=True)
        if command == "fs":
            return scan_repo(settings)
        if command == "image":
            return scan_image(settings, rest[0])
        if command == "sbom":
            return write_sbom(settings, *rest)
        if command == "dockerfiles":
            return lint_dockerfiles(settings)
        return audit_workflows(settings)
    except (ScanError, gate.GateInputError, OSError) as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
