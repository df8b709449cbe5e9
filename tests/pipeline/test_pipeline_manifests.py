"""`dagger call manifests` and `publish --manifests`: the deploy/ set rendered for a digest
(ci/src/onnx_serving/manifests.py, validated in tests/deploy) — a plan that writes exactly
those files and runs nothing, and a one-line error for an unpinned image."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from onnx_serving import manifests
from onnx_serving.deploy import kserve
from onnx_serving.variants import Variant

from .plan import Call, FakeEngine, calls, fake_engine, names

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"ghcr.io/acme/onnx-serving:1.2.3@{DIGEST}"


def test_manifests_writes_the_rendered_set(module: Any, engine: FakeEngine) -> None:
    out = asyncio.run(module.manifests(image=IMAGE, variant="gpu", namespace="ml"))
    chain = calls(out)
    assert names(chain) == ["directory"] + ["withNewFile"] * (len(chain) - 1)
    written = {c.args["path"]: c.args["contents"] for c in chain[1:]}
    assert written == manifests.render(IMAGE, Variant.gpu, kserve.DEFAULT_STORAGE_URI, "ml")
    assert any(f"@{DIGEST}" in text for text in written.values())
    assert engine.queries == []  # a Directory is returned, nothing ran


@pytest.mark.parametrize("image", ["ghcr.io/acme/onnx-serving:1.2.3", "onnx@sha256:abc"])
def test_an_unpinned_image_is_a_one_line_error(module: Any, engine: FakeEngine, image: str) -> None:
    with pytest.raises(ValueError) as error:
        asyncio.run(module.manifests(image=image))
    assert repr(image) in str(error.value) and "\n" not in str(error.value)


def test_publish_prints_the_set_for_the_digests_it_pushed(module: Any) -> None:
    clean = json.dumps({"SchemaVersion": 2, "Results": []})

    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return clean
        return str(FakeEngine().answer(chain))

    with fake_engine({"contents": contents}):
        out = asyncio.run(
            module.publish(tag="v1.2.3", repository="acme/onnx-serving", manifests=True)
        )
    refs = out.split("\n---\n")[0].splitlines()
    assert len(refs) == 8  # 4 tags x 2 variants, then the manifests
    rendered = manifests.render_published([refs[0], refs[4]])  # 1.2.3 and 1.2.3-gpu
    for path, text in rendered.items():
        assert f"---\n# {path}\n{text}" in out
    assert {"cpu/kubernetes.yaml", "gpu/kubernetes.yaml"} <= set(rendered)
