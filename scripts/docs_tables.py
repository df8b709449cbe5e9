"""The docs' generated tables: each restates a declaration of the code or one measurement.

    python3 scripts/docs_tables.py            # rewrite every generated block in place
    python3 scripts/docs_tables.py --check    # exit 1 naming each stale block, change nothing

A block is the text between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` in
README.md, CONTRIBUTING.md or docs/*.md. Its sources:
- `settings`: the declarations of service/settings.py;
- `variants`, `size-summary`: the variant table (ci/src/onnx_serving/variants.py) and the
  size measurement bench/results/images.json;
- `sizes`, `builds`: that measurement (written by `bench/image_report.py --json`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "ci" / "src")]

from bench.image_report import BASELINE, BUDGETED, SIZE_BUDGET, Sizes, mb, size_table  # noqa: E402
from onnx_serving.variants import Variant  # noqa: E402
from service.settings import settings_table  # noqa: E402

MEASUREMENT = REPO / "bench" / "results" / "images.json"
BLOCK = re.compile(
    r"<!-- generated:(?P<name>[a-z-]+) -->\n(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S
)


def documents() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def measurement() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MEASUREMENT.read_text())
    return data


def measured_sizes(data: dict[str, Any]) -> Sizes:
    return Sizes(
        base=data["base_bytes"],
        venv=data["venv_bytes"],
        images={Variant(name): size for name, size in data["image_bytes"].items()},
    )


def _provenance(data: dict[str, Any]) -> str:
    base = "a Debian stand-in for " if data["base_is_stand_in"] else ""
    return (
        f"Measured {data['measured_utc']} UTC with `{data['command']}` (Docker "
        f"{data['docker']}, base image {base}`{data['base_image']}`; "
        "`bench/results/images.json`)."
    )


def sizes_block() -> str:
    data = measurement()
    return f"{size_table(measured_sizes(data))}\n\n{_provenance(data)}\n"


def builds_block() -> str:
    data = measurement()
    rows = [
        "| image | cold build | rebuild after code edit | deps cached | run -> ready | "
        "run -> healthy |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, build in data["builds"].items():
        cold = "not run" if build["cold_build_s"] is None else f"{build['cold_build_s']:.0f} s"
        cached = "yes" if build["dependencies_cached"] else "**no**"
        rows.append(
            f"| {name} | {cold} | {build['rebuild_s']:.1f} s | {cached} | "
            f"{build['ready_s']:.1f} s | {build['healthy_s']:.1f} s |"
        )
    return "\n".join(rows) + f"\n\n{_provenance(data)}\n"


def _size(data: dict[str, Any], variant: Variant) -> str:
    size = data["image_bytes"].get(variant.value)
    return "not measured" if size is None else mb(size)


def variants_block() -> str:
    data = measurement()
    rows = [
        "| variant | built from | platforms | published as | size | what it is |",
        "|---|---|---|---|---:|---|",
    ]
    for variant in Variant:
        spec = variant.spec
        built_from = f"`{spec.dockerfile}`" + (f", target `{spec.target}`" if spec.target else "")
        published = f"`1.2.3{spec.tag_suffix}`" if spec.published else "not published"
        rows.append(
            f"| `{variant}` | {built_from} | {', '.join(spec.platforms)} | {published} | "
            f"{_size(data, variant)} | {spec.description} |"
        )
    return "\n".join(rows) + f"\n\nSizes: {_provenance(data)}\n"


def size_summary_block() -> str:
    data = measurement()
    sizes = measured_sizes(data)
    rows = ["| variant | what it is | size |", "|---|---|---:|"]
    rows += [f"| `{v}` | {v.spec.description} | {_size(data, v)} |" for v in Variant]
    summary = (
        f"The `{BUDGETED}` image is {sizes.ratio(BUDGETED):.2f} x its lower bound (base image + "
        f"installed dependencies; budget {SIZE_BUDGET:.2f}) and {sizes.cut(BUDGETED):.0%} "
        f"smaller than `{BASELINE}`. {_provenance(data)}"
    )
    return "\n".join(rows) + f"\n\n{summary}\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": lambda: settings_table() + "\n",
    "variants": variants_block,
    "size-summary": size_summary_block,
    "sizes": sizes_block,
    "builds": builds_block,
}


def regenerate(text: str, where: Path) -> str:
    """`text` with every generated block rewritten; an unknown block name is an error."""

    def body(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATORS:
            raise SystemExit(
                f"docs_tables: {where}: unknown block {name!r} ({', '.join(GENERATORS)})"
            )
        return f"<!-- generated:{name} -->\n{GENERATORS[name]()}<!-- /generated:{name} -->"

    return BLOCK.sub(body, text)


def stale() -> list[str]:
    """`path: block` for each generated block that is not what its sources give."""
    found = []
    for path in documents():
        text = path.read_text()
        fresh = regenerate(text, path)
        for old, new in zip(BLOCK.finditer(text), BLOCK.finditer(fresh), strict=True):
            if old.group(0) != new.group(0):
                found.append(f"{path.relative_to(REPO)}: {old['name']}")
    return found


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print(f"usage: python3 scripts/docs_tables.py [--check], not {argv}", file=sys.stderr)
        return 2
    if argv:
        blocks = stale()
        for block in blocks:
            print(
                f"docs_tables: stale: {block} (run python3 scripts/docs_tables.py)", file=sys.stderr
            )
        return 1 if blocks else 0
    for path in documents():
        text = path.read_text()
        fresh = regenerate(text, path)
        if fresh != text:
            path.write_text(fresh)
            print(f"docs_tables: rewrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
