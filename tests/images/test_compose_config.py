"""compose.yaml states the variant table's facts for Compose: each service builds its
variant's Dockerfile target under its local tag and runs with the same hardening as
scripts/. No engine needed: the YAML itself is read (anchors resolved)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from onnx_serving.images import CONTAINER_PORT, HARDENED_RUN_FLAGS, STOP_TIMEOUT_S
from onnx_serving.variants import Variant
from tests.images.docker_support import REPO

DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(.+)\}$")  # ${ONNX_SERVING_IMAGE:-onnx-serving:cpu}


def services() -> dict[str, dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    found: dict[str, dict[str, Any]] = document["services"]
    return found


def default_of(value: str) -> str:
    match = DEFAULT.match(value)
    return match.group(1) if match else value


def test_every_service_is_a_variant_built_from_its_target() -> None:
    for name, service in services().items():
        variant = Variant(name)  # a service named after no variant fails here
        build = service["build"]
        assert (build["dockerfile"], build["target"]) == (
            variant.spec.dockerfile,
            variant.spec.target,
        ), name
        assert default_of(service["image"]) == variant.local_tag, name
        assert build["secrets"] == ["ca_bundle"], name


def test_every_service_runs_hardened_on_loopback() -> None:
    flags = dict(zip(HARDENED_RUN_FLAGS[1::2], HARDENED_RUN_FLAGS[2::2], strict=False))
    for name, service in services().items():
        assert HARDENED_RUN_FLAGS[0] == "--read-only" and service["read_only"] is True, name
        assert service["tmpfs"] == [flags["--tmpfs"]], name
        assert service["cap_drop"] == [flags["--cap-drop"]], name
        assert service["security_opt"] == [f"{flags['--security-opt']}:true"], name
        assert service["stop_grace_period"] == f"{STOP_TIMEOUT_S}s", name
        [port] = service["ports"]
        assert port.startswith("127.0.0.1:") and port.endswith(f":{CONTAINER_PORT}"), name
        assert "healthcheck" not in service, f"{name}: the image's own HEALTHCHECK applies"
