"""compose.yaml scaled: `docker compose up --scale api=3 --wait` starts three API replicas
with the PostgreSQL inference log; each answers health and an inference request on its own
127.0.0.1 port (`docker compose port --index N api 8000`), and `down -v` removes everything."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from onnx_serving.examples import example_inputs
from onnx_serving.variants import Variant
from tests.images.docker_support import host_ca_bundle
from tests.images.serving import model_metadata, served_models
from tests.images.test_compose import Compose, compose_env, postgres_image  # noqa: F401

pytestmark = pytest.mark.docker

PROJECT = "images-test-compose-scale"
REPLICAS = 3
RANGE_SIZE = 5  # loopback ports offered to the replicas: more than they need


def free_port_range(size: int) -> int:
    """The first of `size` consecutive free loopback ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        if first + size > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                held.append(socket.socket())
                held[-1].bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in held:
                probe.close()
    raise AssertionError(f"no {size} consecutive free loopback ports")


@pytest.fixture
def scaled(
    compose_env: dict[str, str],  # noqa: F811 (the fixture imported above)
    built_image: Callable[[Variant], str],
    postgres_image: str,  # noqa: F811
) -> Iterator[Compose]:
    first = free_port_range(RANGE_SIZE)
    run = Compose(
        {
            **compose_env,
            "ONNX_SERVING_IMAGE": built_image(Variant.cpu),  # `up --no-build` runs it
            "ONNX_SERVING_POSTGRES_IMAGE": postgres_image,
            "ONNX_SERVING_PORT": str(first),
            "ONNX_SERVING_PORT_LAST": str(first + RANGE_SIZE - 1),
            "CA_BUNDLE": str(host_ca_bundle()),
        },
        PROJECT,
    )
    yield run
    run("down", "--volumes", "--remove-orphans", timeout=120)


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        return json.load(answer)


def test_three_api_replicas_each_answer_on_their_own_port(scaled: Compose) -> None:
    up = scaled("up", "--scale", f"api={REPLICAS}", "--wait", "--no-build")
    assert up.returncode == 0, up.stdout + up.stderr
    first = int(scaled.env["ONNX_SERVING_PORT"])

    addresses = []
    for index in range(1, REPLICAS + 1):
        published = scaled("port", "--index", str(index), "api", "8000")
        assert published.returncode == 0, published.stderr
        addresses.append(published.stdout.strip())
    assert len(set(addresses)) == REPLICAS, addresses
    for address in addresses:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and first <= int(port) < first + RANGE_SIZE, address

    indexes = []
    for number, url in enumerate(addresses):
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=10) as ready:
            assert json.load(ready) == {"ready": True}
        model, versions = sorted(served_models(url).items())[0]
        inputs = example_inputs(model_metadata(url, model), 1)
        body = {"id": f"replica-{number}", "inputs": [item.as_json() for item in inputs]}
        reply = post_json(f"http://{url}/v2/models/{model}/infer", body)
        assert (reply["id"], reply["model_version"]) == (f"replica-{number}", versions[-1])
        indexes.append(post_json(f"http://{url}/v2/repository/index", {}))
    assert indexes[1:] == indexes[:1] * (REPLICAS - 1)  # one image: the same models, same sha256

    down = scaled("down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert scaled("ps", "--all", "--quiet").stdout.strip() == ""
    assert scaled("volumes", "--format", "{{.Name}}").stdout.strip() == ""
