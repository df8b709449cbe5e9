"""The plan of `publish`: tags x variants, platform variants, registry auth by secret only.

The fake engine answers each `publish(address)` with a stand-in digest derived from the
address; the assertions are on what the module asked the engine to push, and how.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dagger import dag

from .conftest import make_module
from .plan import Call, FakeEngine, calls, dockerfile_target, names, only, render, stand_in_digest

MARKER = "ghp_publish-token-unique-5c1e2d"
REPO = "ghcr.io/acme/onnx-serving"


def _publish(module: Any, **kwargs: Any) -> str:
    result: str = asyncio.run(module.publish(**kwargs))
    return result


def _builds(publish_call: Call) -> list[dict[str, Any]]:
    """The dockerBuild arguments of each platform variant of one publish call."""
    return [only(calls(c), "dockerBuild").args for c in publish_call.args["platformVariants"]]


def test_release_publishes_every_tag_of_every_variant(module: Any, engine: FakeEngine) -> None:
    token = dag.set_secret("registry-token", MARKER)
    out = _publish(
        module,
        tag="v1.2.3",
        registry="ghcr.io",
        repository="acme/onnx-serving",
        username="release-bot",
        password=token,
    )
    expected = [f"{REPO}:{t}" for t in ("1.2.3", "1.2", "1", "latest")] + [
        f"{REPO}:{t}-gpu" for t in ("1.2.3", "1.2", "1", "latest")
    ]
    queries = engine.queries_named("publish")
    assert [q[-1].args["address"] for q in queries] == expected
    assert out.splitlines() == [stand_in_digest(a) for a in expected]  # one ref@sha256 per tag
    assert engine.leaf_names() == ["publish"] * 8  # pushes, and nothing else, were executed

    for query in queries:
        gpu = query[-1].args["address"].endswith("-gpu")
        builds = _builds(query[-1])
        platforms = [b["platform"] for b in builds]
        targets = {dockerfile_target(b) for b in builds}
        if gpu:
            assert platforms == ["linux/amd64"]
            assert targets == {("dockerfiles/Dockerfile", "gpu")}
        else:  # one multi-platform manifest
            assert platforms == ["linux/amd64", "linux/arm64"]
            assert targets == {("dockerfiles/Dockerfile", "cpu")}
        for build in builds:  # the release version is the image's VERSION label
            assert {"name": "VERSION", "value": "1.2.3"} in build["buildArgs"]


def test_registry_auth_uses_the_secret_by_reference(module: Any, engine: FakeEngine) -> None:
    token = dag.set_secret("registry-token", MARKER)
    _publish(module, tag="v2.0.0", repository="acme/onnx", username="bot", password=token)
    for query in engine.queries_named("publish"):
        assert names(query) == ["container", "withRegistryAuth", "publish"]
        auth = query[1].args
        assert auth["address"] == "ghcr.io"
        assert auth["username"] == "bot"
        assert auth["secret"] is token  # the very Secret given, passed on as a reference
        # The token's value is nowhere in what the engine is asked to do.
        assert MARKER not in render([c.args for c in query])
    assert "plaintext" not in engine.leaf_names()  # the module never read the token


def test_v1_2_publishes_the_release_line(module: Any, engine: FakeEngine) -> None:
    out = _publish(module, tag="v1.2", registry="localhost:5000", repository="acme/onnx")
    tags = [line.split("@")[0].rpartition(":")[2] for line in out.splitlines()]
    assert tags == ["1.2", "1", "latest", "1.2-gpu", "1-gpu", "latest-gpu"]
    # Without credentials the engine's own registry config is used: no auth step.
    assert all(names(q) == ["container", "publish"] for q in engine.queries_named("publish"))


def test_prerelease_moves_no_floating_tag(module: Any, engine: FakeEngine) -> None:
    out = _publish(module, tag="v1.3.0-rc.1", repository="acme/onnx")
    assert out.splitlines() == [
        stand_in_digest("ghcr.io/acme/onnx:1.3.0-rc.1"),
        stand_in_digest("ghcr.io/acme/onnx:1.3.0-rc.1-gpu"),
    ]


def test_repository_is_lowercased_like_image_names(module: Any, engine: FakeEngine) -> None:
    # GitHub's `github.repository` keeps capitals ("Acme/Onnx-Serving"); image names cannot.
    _publish(module, tag="v1.0.0", repository="Acme/Onnx-Serving", variants=["cpu"])
    address = engine.queries_named("publish")[0][-1].args["address"]
    assert address == "ghcr.io/acme/onnx-serving:1.0.0"


def test_variants_select_what_is_published(module: Any, engine: FakeEngine) -> None:
    _publish(module, tag="v1.0.0", repository="acme/onnx", variants=["gpu"])
    addresses = [q[-1].args["address"] for q in engine.queries_named("publish")]
    assert addresses == [f"ghcr.io/acme/onnx:{t}-gpu" for t in ("1.0.0", "1.0", "1", "latest")]


def test_published_images_carry_the_module_labels(engine: FakeEngine) -> None:
    module = make_module(revision="feedbeef", source_url="https://github.com/acme/onnx")
    _publish(module, tag="v3.1.4", repository="acme/onnx", variants=["cpu"])
    for build in _builds(engine.queries_named("publish")[0][-1]):
        assert {"name": "REVISION", "value": "feedbeef"} in build["buildArgs"]
        assert {"name": "SOURCE_URL", "value": "https://github.com/acme/onnx"} in build["buildArgs"]


def test_every_published_build_gets_the_ca_bundle_secret(engine: FakeEngine) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----y"))
    _publish(module, tag="v1.0.0", repository="acme/onnx")
    assert engine.leaf_names().count("plaintext") == 1  # read once, re-registered once
    for query in engine.queries_named("publish"):
        for build in _builds(query[-1]):
            [secret] = build["secrets"]
            assert calls(secret)[0].args["name"] == "ca_bundle"
