"""What the check container needs on top of the dev image: the root pyproject's `dev` extras.

The dev image carries the runtime plus a locked subset of the dev tools; the checks also
need the scanners, hadolint, zizmor, the Dagger SDK (the pipeline tests) and onnx (the
service tests build models). Installing the `dev` list keeps one source of truth for "what
the tests need" (the same list `scripts/dev_env.sh` installs); pip skips what the image has.
Pure Python, no dagger import.
"""

from __future__ import annotations

import tomllib


def dev_requirements(pyproject_text: str) -> list[str]:
    """The `[project.optional-dependencies] dev` requirement strings of a pyproject.toml."""
    try:
        requirements = tomllib.loads(pyproject_text)["project"]["optional-dependencies"]["dev"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise ValueError(f"pyproject.toml has no usable dev extras list: {exc}") from None
    if not isinstance(requirements, list) or not requirements:
        raise ValueError(f"pyproject.toml dev extras must be a non-empty list: {requirements!r}")
    return [str(r) for r in requirements]
