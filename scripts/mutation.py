"""Mutation testing of service/ and ci/src/onnx_serving/ with mutmut, scored per package.

    scripts/mutation.sh                 # a seeded sample of 250 mutants per package, scored
    scripts/mutation.sh --sample 0      # every mutant (many hours on two cores)
    scripts/mutation.sh --seed 7        # another sample
    scripts/mutation.sh --resume        # finish an interrupted run (keeps mutants/)
    scripts/mutation.sh score           # the last run's score, with every mutant not killed
    scripts/mutation.sh show NAME       # any other mutmut command (show, results, browse)

Each mutant runs against the non-Docker tests that reach its function (mutmut's test
selection). The same seed over the same code draws the same mutants. Configuration:
[tool.mutmut] in pyproject.toml. mutmut works in mutants/ (gitignored), a copy of the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
WORKDIR = REPO / "mutants"
SAMPLE_FILE = WORKDIR / "sample.json"
# Module prefix -> the package it is reported as.
PACKAGES = {"service.": "service/", "onnx_serving.": "ci/src/onnx_serving/"}
# A timeout is not counted as killed: it says the tests ran too long, not that one failed.
# Timeouts are listed with the survivors, to be checked by hand.
KILLED = ("killed", "segfault")
TYPE_CHECKED = "caught by type check"  # mypy --strict rejects it: the lint check fails


def _patch_module_names() -> None:
    """mutmut names a file's mutants after its path, stripping only a leading "src.", but
    ci/src/onnx_serving/gate.py is imported as onnx_serving.gate: strip "ci.src." too, or
    no mutant of ci/src would ever be switched on or matched to a test."""
    import mutmut.__main__ as main
    import mutmut.mutation.file_mutation as file_mutation
    import mutmut.utils.format_utils as format_utils

    original: Callable[[Path, str], str] = format_utils.get_mutant_name

    def get_mutant_name(relative_source_path: Path, mutant_method_name: str) -> str:
        return original(relative_source_path, mutant_method_name).removeprefix("ci.src.")

    for module in (format_utils, main, file_mutation):
        module.get_mutant_name = get_mutant_name  # type: ignore[attr-defined]


def _statuses() -> dict[str, str]:
    """Every mutant generated and its status (killed, survived, not checked, ...)."""
    from mutmut.stats import status_by_exit_code

    statuses: dict[str, str] = {}
    for meta in sorted(WORKDIR.rglob("*.py.meta")):
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in exit_codes.items():
            statuses[name] = status_by_exit_code[code]
    return statuses


def _generate() -> list[str]:
    """mutmut's first step alone (copy the repo into mutants/, write the mutants): all names."""
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir

    set_mutant_under_test("mutant_generation")
    WORKDIR.mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    create_mutants(os.cpu_count() or 2)
    return sorted(_statuses())


def _draw(names: list[str], per_package: int, seed: int) -> list[str]:
    """`per_package` mutants of each package (all of them if 0), the same for the same seed."""
    chosen: list[str] = []
    for prefix in PACKAGES:
        mine = [name for name in names if name.startswith(prefix)]
        if per_package and per_package < len(mine):
            mine = random.Random(f"{seed}:{prefix}").sample(mine, per_package)
        chosen += sorted(mine)
    return chosen


def score() -> int:
    """Print the score per package and every sampled mutant not killed; 1 if no results."""
    statuses = _statuses()
    sample = json.loads(SAMPLE_FILE.read_text()) if SAMPLE_FILE.exists() else None
    if not statuses or sample is None:
        print("mutation: no results in mutants/: run scripts/mutation.sh first", file=sys.stderr)
        return 1
    print(f"seed {sample['seed']}, {sample['per_package'] or 'all'} mutants per package")
    for prefix, package in PACKAGES.items():
        generated = [name for name in statuses if name.startswith(prefix)]
        mine = {name: statuses[name] for name in sample["names"] if name.startswith(prefix)}
        counts = Counter(mine.values())
        killed = sum(counts[status] for status in KILLED)
        checked = len(mine) - counts["not checked"]
        by_tests = checked - counts[TYPE_CHECKED]
        print(
            f"{package}: {killed + counts[TYPE_CHECKED]}/{checked} killed "
            f"({_percent(killed + counts[TYPE_CHECKED], checked)}; by the tests alone "
            f"{killed}/{by_tests}, {_percent(killed, by_tests)}) of {len(generated)} mutants"
        )
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in KILLED)
        print(f"    {others}")
        for name, status in sorted(mine.items()):
            if status not in (*KILLED, TYPE_CHECKED):
                print(f"    {status}: {name}  {_change(name)}")
    return 0


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _change(name: str) -> str:
    """The mutated line(s) of a mutant, as `- old | + new`."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    try:
        diff = get_diff_for_mutant(name)
    except Exception as exc:  # a file changed since the run: the name is still reported
        return f"(no diff: {type(exc).__name__})"
    lines = diff.splitlines()[2:]  # after the ---/+++ header
    return " | ".join(" ".join(line.split()) for line in lines if line[:1] in "+-")


def _stop_handler(driver: int) -> Callable[[int, FrameType | None], None]:
    """SIGTERM: this process cleans up on its way out; mutmut's forked workers just end."""

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != driver:
            os._exit(128 + signum)
        sys.exit(128 + signum)

    return stop


def _mutmut(argv: list[str]) -> int:
    import mutmut.__main__ as mutmut_main

    try:
        mutmut_main.cli.main(argv, prog_name="mutmut", standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code) if isinstance(stop.code, int) else 1 if stop.code else 0
    return 0


def run(per_package: int, seed: int, resume: bool) -> int:
    if resume and SAMPLE_FILE.exists():
        sample = json.loads(SAMPLE_FILE.read_text())
        statuses = _statuses()
        names = [name for name in sample["names"] if statuses.get(name) == "not checked"]
    else:
        shutil.rmtree(WORKDIR, ignore_errors=True)
        names = _draw(_generate(), per_package, seed)
        sample = {"seed": seed, "per_package": per_package, "names": names}
        SAMPLE_FILE.write_text(json.dumps(sample, indent=1))
    # A process group of our own: a mutant's test run killed at its time limit leaves its
    # server subprocesses behind, and they end with the run (also when it is stopped).
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _stop_handler(os.getpid()))
    try:
        code = _mutmut(["run", *names]) if names else 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)
    return code or score()


def main(argv: list[str]) -> int:
    os.chdir(REPO)
    _patch_module_names()
    if argv and not argv[0].startswith("-"):
        return score() if argv == ["score"] else _mutmut(argv)
    parser = argparse.ArgumentParser(prog="scripts/mutation.sh", description=__doc__)
    parser.add_argument("--sample", type=int, default=250, help="mutants per package; 0: all")
    parser.add_argument("--seed", type=int, default=1, help="which mutants are drawn")
    parser.add_argument("--resume", action="store_true", help="keep mutants/ and its results")
    args = parser.parse_args(argv)
    return run(args.sample, args.seed, args.resume)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
