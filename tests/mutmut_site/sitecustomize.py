"""mutmut (scripts/mutation.sh) in the tests' subprocesses: `python -m service` and friends.

Under mutmut, tests/conftest.py puts this folder on PYTHONPATH, so that Python imports this
file at start-up in each subprocess a test starts (one that sets a PYTHONPATH of its own runs
plainly). It fills two gaps of mutmut, which knows only the pytest process:

- A module run with `python -m` is named `__main__`, so mutmut would never switch on the
  mutants of service/__main__.py or onnx_serving/loadgen.py there: their names are mapped.
- mutmut runs, for each mutant, only the tests that called its function during a first
  "stats" run. In that run (MUTMUT_HITS_DIR set) every call is appended to a file of this
  process, and tests/conftest.py credits the calls to the test that is running.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HITS_DIR = "MUTMUT_HITS_DIR"
MAIN = "__main__."


def _main_module() -> str | None:
    """The real name of the module `python -m` runs as __main__ (None for scripts, -c)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else None


def _install() -> None:
    import mutmut.mutation.trampoline as trampoline

    active = trampoline.get_mutant_under_test

    def get_mutant_under_test() -> str:
        name = active()
        main = _main_module()
        if main and name.startswith(f"{main}.") and "." not in name[len(main) + 1 :]:
            return MAIN + name[len(main) + 1 :]
        return name

    trampoline.get_mutant_under_test = get_mutant_under_test
    if folder := os.environ.get(HITS_DIR):
        _record_calls(Path(folder))


def _record_calls(folder: Path) -> None:
    """Append the name of every mutated function this process calls to its own file."""
    import mutmut.mutation.trampoline as trampoline

    # This process only: a child that cannot record (its own PYTHONPATH) must not try to.
    trampoline._mutant_under_test = "stats"
    fd = os.open(folder / f"{os.getpid()}.hits", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(name: str, caller: str | None = None) -> None:
        if name.startswith(MAIN) and (main := _main_module()):
            name = f"{main}.{name.removeprefix(MAIN)}"
        os.write(fd, f"{name}\n".encode())  # unbuffered: the test may read it right after

    trampoline.record_trampoline_hit = record  # type: ignore[attr-defined]


def new_hits(folder: Path, offsets: dict[Path, int]) -> dict[Path, set[str]]:
    """Per subprocess file, the function names recorded since the last call (offsets: the
    bytes read so far, updated)."""
    found: dict[Path, set[str]] = {}
    for path in sorted(folder.glob("*.hits")):
        with path.open("rb") as handle:
            handle.seek(offsets.get(path, 0))
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        offsets[path] = offsets.get(path, 0) + len(complete)
        found[path] = set(complete.decode().split())
    return found


if __name__ == "sitecustomize":
    _install()
