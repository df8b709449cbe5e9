"""The docs state each checkable fact once, or state it the same way everywhere: generated
tables match their sources, the benchmark block matches its results file, and sizes, counts
and timeouts written in prose agree with the code."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import yaml

from bench import report
from bench.results import RunResults
from onnx_serving.images import STOP_TIMEOUT_S
from onnx_serving.variants import Variant
from scripts import docs_tables

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "ci" / "src" / "onnx_serving" / "main.py"
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def prose(path: Path) -> str:
    """A document without its generated blocks."""
    return docs_tables.BLOCK.sub("", path.read_text())


def where(path: Path, text: str, match: re.Match[str]) -> str:
    line = text.count("\n", 0, match.start()) + 1
    return f"{path.relative_to(REPO)}:{line}: {match.group(0)!r}"


def test_every_generated_table_is_what_its_sources_give() -> None:
    assert docs_tables.stale() == []


def test_a_stale_block_is_found_and_rewritten(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- generated:settings -->\n| old |\n<!-- /generated:settings -->\n")
    fresh = docs_tables.regenerate(doc.read_text(), doc)
    assert "| old |" not in fresh and "`MODEL_REPOSITORY`" in fresh
    assert docs_tables.regenerate(fresh, doc) == fresh
    with pytest.raises(SystemExit, match="unknown block 'nope'"):
        docs_tables.regenerate("<!-- generated:nope -->\n<!-- /generated:nope -->", doc)


def test_the_benchmark_block_is_what_its_results_file_renders(tmp_path: Path) -> None:
    docs = REPO / "docs" / "OPTIMIZATION.md"
    copy = tmp_path / "docs" / "OPTIMIZATION.md"
    copy.parent.mkdir()
    shutil.copy(docs, copy)
    block = docs.read_text().split(report.DOCS_BEGIN)[1]
    command = re.search(r"Measured [^`]* with `(.*?)`\.", block)
    assert command, "the results block names no command"
    results = RunResults.load(REPO / "bench" / "results" / "latest.json")
    report.update_docs(copy, results, command.group(1), tmp_path / "bench/results/latest.png")
    assert copy.read_text() == docs.read_text()


def registered_functions() -> list[str]:
    """The `@function` methods of the module's object, from its source."""
    tree = ast.parse(MAIN.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id == "function":
                    names.append(node.name)
    return names


def test_the_docs_count_the_functions_the_module_registers() -> None:
    count = len(registered_functions())
    assert count >= 10, registered_functions()
    stated = re.compile(
        rf"\b(\d+|{'|'.join(NUMBER_WORDS)}) (?:Dagger |pipeline )?functions\b", re.I
    )
    wrong = []
    for path in docs_tables.documents():
        text = prose(path)
        for match in stated.finditer(text):
            word = match.group(1).lower()
            value = int(word) if word.isdigit() else NUMBER_WORDS.index(word)
            if value != count:
                wrong.append(where(path, text, match))
    assert not wrong, f"the module registers {count} functions: {wrong}"


def test_image_sizes_are_stated_only_in_generated_tables() -> None:
    """A size in prose goes stale with the next measurement and disagrees with the tables."""
    variants = "|".join(v.value for v in Variant)
    size = re.compile(
        rf"\b(?:{variants})\b(?: image)?[^|\n.]{{0,30}}?~?\d[\d,.]*\s?(?:MB|GB)\b", re.I
    )
    found = [
        where(path, prose(path), match)
        for path in docs_tables.documents()
        for match in size.finditer(prose(path))
    ]
    assert not found, found


def test_stop_timeouts_agree_with_the_run_flags() -> None:
    """`docker run --stop-timeout` (scripts/), compose's stop_grace_period and the docs."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    graces = {
        s["stop_grace_period"] for s in compose["services"].values() if "stop_grace_period" in s
    }
    assert graces == {f"{STOP_TIMEOUT_S}s"}, graces
    stated = re.compile(r"(?:--stop-timeout|stop_grace_period:?)\s*`?\s*(\d+)")
    wrong = [
        where(path, prose(path), match)
        for path in docs_tables.documents()
        for match in stated.finditer(prose(path))
        if int(match.group(1)) != STOP_TIMEOUT_S
    ]
    assert not wrong, f"the stop timeout is {STOP_TIMEOUT_S} s: {wrong}"


def test_every_document_link_resolves() -> None:
    """Moving a section to another page must not leave links to where it was."""
    link = re.compile(r"\]\(((?!https?://|#)[^)#\s]+)(?:#[^)]*)?\)")
    broken = [
        where(path, path.read_text(), match)
        for path in docs_tables.documents()
        for match in link.finditer(path.read_text())
        if not (path.parent / match.group(1)).exists()
    ]
    assert not broken, broken
