"""The Dagger SDK as the engine's Python runtime sees it, for locking the module here.

The runtime copies its SDK into ci/sdk (gitignored) as an unversioned path dependency and
locks ci/uv.lock against it with `uv lock`. Outside an engine, this writes a stand-in
ci/sdk/pyproject.toml with the same name, version and dependencies, taken from the metadata
of the dagger-io release dagger.json pins, so `uv lock` (scripts/lock-module.sh) and
`uv lock --check` (tests) see what the runtime sees. Pure Python, no dagger import.

    python -m onnx_serving.sdk_stand_in OUT/pyproject.toml
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

SDK_DISTRIBUTION = "dagger-io"


def sdk_pyproject(engine_version: str) -> str:
    """The stand-in SDK pyproject.toml, [project] only (all `uv lock` reads); the installed
    dagger-io must be the engine's release."""
    meta = importlib.metadata.metadata(SDK_DISTRIBUTION)
    if meta["Version"] != engine_version:
        raise ValueError(
            f"{SDK_DISTRIBUTION} {meta['Version']} is installed, dagger.json pins the engine "
            f"{engine_version}: install the same release (requirements/test.lock)"
        )
    requires = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    return "\n".join(
        [
            "[project]",
            f'name = "{SDK_DISTRIBUTION}"',
            'version = "0.0.0"  # the SDK source the runtime copies in is unversioned',
            f'requires-python = "{meta["Requires-Python"]}"',
            "dependencies = [",
            *(f"    {json.dumps(r)}," for r in requires),
            "]",
            "",
        ]
    )


def engine_version(dagger_json: Path) -> str:
    """The engine release dagger.json pins, without its `v`."""
    engine: str = json.loads(dagger_json.read_text())["engineVersion"]
    return engine.removeprefix("v")


def main(argv: list[str]) -> int:
    """Write the stand-in to argv[0], for the engine dagger.json (in the cwd) pins."""
    if len(argv) != 1:
        print("usage: python -m onnx_serving.sdk_stand_in OUT/pyproject.toml", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(sdk_pyproject(engine_version(Path("dagger.json"))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
