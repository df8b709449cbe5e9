"""The plans of `build` and `serve`: Dockerfile per variant, build args, platform, secret."""

from __future__ import annotations

import asyncio
from typing import Any

from dagger import dag

from .conftest import make_module
from .plan import (
    REPO,
    FakeEngine,
    calls,
    dockerfile_target,
    find,
    names,
    only,
    render,
    repository_models_label,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB-unit-test-ca-7f3a\n-----END CERTIFICATE-----\n"


def test_cpu_build_is_the_cpu_target_for_the_engine_platform(
    module: Any, engine: FakeEngine
) -> None:
    chain = calls(asyncio.run(module.build()))
    assert names(chain) == ["host", "directory", "dockerBuild"]
    build = chain[-1].args
    assert dockerfile_target(build) == ("dockerfiles/Dockerfile", "cpu")
    assert "platform" not in build  # None: the engine's own platform, no emulation
    # No VERSION arg: the image gets the Dockerfile's default version label, 0.0.0-dev. The
    # one arg is the models it serves, each with its sha256 (sha256sum in the base image).
    assert build["buildArgs"] == [{"name": "MODELS", "value": repository_models_label()}]
    dockerfile = (REPO / "dockerfiles/Dockerfile").read_text()
    assert "ARG VERSION=0.0.0-dev " in dockerfile
    assert "secrets" not in build
    assert engine.queries == []  # beyond the models' digests, a plan sends nothing
    [read_base, sha256sum] = engine.identity_queries
    assert names(read_base)[-2:] == ["file", "contents"]  # the Dockerfile's ARG BASE_IMAGE
    assert only(sha256sum, "from").args["address"] == "python:3.11-slim-bookworm"


def test_gpu_build_is_the_gpu_dockerfile_for_amd64(module: Any, engine: FakeEngine) -> None:
    build = only(calls(asyncio.run(module.build(variant="gpu"))), "dockerBuild").args
    assert dockerfile_target(build) == ("dockerfiles/Dockerfile", "gpu")
    assert build["platform"] == "linux/amd64"


def test_cpu_build_for_arm64(module: Any, engine: FakeEngine) -> None:
    build = only(calls(asyncio.run(module.build(platform="linux/arm64"))), "dockerBuild").args
    assert build["platform"] == "linux/arm64"
    assert dockerfile_target(build) == ("dockerfiles/Dockerfile", "cpu")


def test_label_build_args_come_from_the_module_options(engine: FakeEngine) -> None:
    base = "python:3.11-slim-bookworm@sha256:" + "ab" * 32
    module = make_module(
        version="1.4.0",
        revision="0123abcd",
        created="2026-11-28T21:00:00Z",
        source_url="https://github.com/acme/onnx-serving",
        base_image=base,
    )
    build = only(calls(asyncio.run(module.build())), "dockerBuild").args
    assert build["buildArgs"] == [
        {"name": "BASE_IMAGE", "value": base},
        {"name": "VERSION", "value": "1.4.0"},
        {"name": "REVISION", "value": "0123abcd"},
        {"name": "CREATED", "value": "2026-11-28T21:00:00Z"},
        {"name": "SOURCE_URL", "value": "https://github.com/acme/onnx-serving"},
        {"name": "MODELS", "value": repository_models_label()},
    ]


def test_ca_bundle_reaches_the_build_only_as_the_ca_bundle_secret(engine: FakeEngine) -> None:
    given = dag.set_secret("host-ca-from-cli", PEM)
    module = make_module(ca_bundle=given)
    image = asyncio.run(module.build())
    build = only(calls(image), "dockerBuild").args
    [secret] = build["secrets"]
    # Re-registered under the id the Dockerfiles mount (RUN --mount=type=secret,id=ca_bundle).
    assert calls(secret)[0].name == "setSecret"
    assert calls(secret)[0].args == {"name": "ca_bundle", "plaintext": PEM}
    # The only query: reading the given secret, to re-register it; nothing else ran.
    assert [names(q) for q in engine.queries] == [["setSecret", "plaintext"]]
    # The image plan references the secret; its value is in no build arg, label or command.
    assert "MIIB-unit-test-ca-7f3a" not in render(image)
    assert find(calls(image), "withEnvVariable") == []


def test_every_variant_build_gets_the_same_secret(engine: FakeEngine) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli", PEM))
    for variant in ("cpu", "gpu"):
        build = only(calls(asyncio.run(module.build(variant=variant))), "dockerBuild").args
        assert [calls(s)[0].args["name"] for s in build["secrets"]] == ["ca_bundle"]


def test_serve_runs_the_image_entrypoint_on_port_8000(module: Any, engine: FakeEngine) -> None:
    chain = calls(asyncio.run(module.serve()))
    assert names(chain) == ["host", "directory", "dockerBuild", "withExposedPort", "asService"]
    assert dockerfile_target(chain[2]) == ("dockerfiles/Dockerfile", "cpu")
    assert chain[3].args == {"port": 8000}
    assert chain[4].args == {"useEntrypoint": True}
    gpu = calls(asyncio.run(module.serve(variant="gpu")))
    assert dockerfile_target(gpu[2]) == ("dockerfiles/Dockerfile", "gpu")
    assert engine.queries == []
