"""compose.yaml states the variant table's facts for Compose: each server service builds its
variant's Dockerfile target under its local tag and runs with the same hardening as
scripts/. The services that are not servers are named in AUXILIARY and checked for what
they are. No engine needed: the YAML itself is read (anchors resolved)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from onnx_serving.images import CONTAINER_PORT, HARDENED_RUN_FLAGS, STOP_TIMEOUT_S
from onnx_serving.variants import Variant
from tests.images.docker_support import REPO

DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(.+)\}$")  # ${ONNX_SERVING_IMAGE:-onnx-serving:cpu}
# Services that are not a variant: the inference log's PostgreSQL.
AUXILIARY = {"db"}
# The server services and the variant each runs: the API (`--scale api=N`) is the cpu image.
SERVICE_VARIANTS = {"api": Variant.cpu, "gpu": Variant.gpu, "dev": Variant.dev}


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    """The server services: every service but the AUXILIARY ones."""
    found: dict[str, dict[str, Any]] = document()["services"]
    assert set(found) >= AUXILIARY, f"auxiliary services gone from compose.yaml: {AUXILIARY}"
    return {name: service for name, service in found.items() if name not in AUXILIARY}


def default_of(value: str) -> str:
    match = DEFAULT.match(value)
    return match.group(1) if match else value


def test_every_service_is_a_variant_built_from_its_target() -> None:
    assert set(services()) == set(SERVICE_VARIANTS)
    for name, service in services().items():
        variant = SERVICE_VARIANTS[name]
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


def test_the_database_is_postgres_15_with_its_password_from_a_secret_file() -> None:
    compose = document()
    db = compose["services"]["db"]
    assert default_of(db["image"]) == "postgres:15"
    assert "ports" not in db  # reachable only on the project's network
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in db["environment"]  # no literal password anywhere
    assert db["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert db["volumes"] == ["db-data:/var/lib/postgresql/data"] and "db-data" in compose["volumes"]
    secret = compose["secrets"]["db_password"]["file"]
    assert (REPO / default_of(secret)).is_file()
    api = compose["services"]["api"]
    assert api["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert api["environment"]["PREDICTION_LOG_PASSWORD_FILE"] == "/run/secrets/db_password"
    url = urlsplit(api["environment"]["PREDICTION_LOG_URL"])
    assert (url.scheme, url.hostname, url.username) == ("postgresql", "db", "onnx")
    assert url.password is None  # it comes from the secret


def test_the_api_publishes_a_port_range_so_it_can_scale() -> None:
    """`--scale api=N`: each replica takes the first free loopback port of the range (a fixed
    host port would let only one replica start); one port when only ONNX_SERVING_PORT is set."""
    [port] = document()["services"]["api"]["ports"]
    first = "${ONNX_SERVING_PORT:-8000}"
    last = "${ONNX_SERVING_PORT_LAST:-${ONNX_SERVING_PORT:-8009}}"
    assert port == f"127.0.0.1:{first}-{last}:{CONTAINER_PORT}"
