"""A model fetched during the build (--model-url, --model-sha256), served by an HTTP server
of this test on 127.0.0.1: a wrong digest fails the build naming both digests, the right one
bakes the model in under --model-name and --model-version, and the image's label and the
running server name it with its sha256."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onnx_serving.models import MODELS_LABEL
from onnx_serving.variants import Variant
from tests.images.docker_support import Container, Docker
from tests.images.serving import repository_index, served_models
from tests.images.test_scripts import script
from tests.models_for_tests import write_mlp

pytestmark = pytest.mark.docker

NAME, VERSION = "scorer", "3"
LYING_IMAGE = "images-onnx-serving:test-lying-label"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(URL of a model on a loopback HTTP server, its sha256)."""
    root = tmp_path_factory.mktemp("model-server")
    model = write_mlp(root / "exported.onnx")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/exported.onnx"
        yield url, hashlib.sha256(model.read_bytes()).hexdigest()
    finally:
        server.shutdown()
        server.server_close()


def build_from_url(url: str, sha256: str) -> tuple[int, str]:
    named = ("--model-name", NAME, "--model-version", VERSION)
    done = script("build.sh", "--model-url", url, "--model-sha256", sha256, *named, "cpu")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.timeout(2400)
def test_a_wrong_digest_fails_the_build_naming_both(
    base_image: str, model_url: tuple[str, str]
) -> None:
    url, sha256 = model_url
    wrong = "0" * 64
    code, output = build_from_url(url, wrong)
    assert code != 0
    assert f"{url} has sha256 {sha256}, expected {wrong}" in output, output[-3000:]


@pytest.mark.timeout(2400)
def test_the_right_digest_serves_the_model_under_its_name(
    docker: Docker,
    base_image: str,
    model_url: tuple[str, str],
    start_container: Callable[..., Container],
) -> None:
    url, sha256 = model_url
    code, output = build_from_url(url, sha256)
    assert code == 0, output[-3000:]
    image = Variant.cpu.local_tag

    labels = json.loads(docker.run("image", "inspect", image).stdout)[0]["Config"]["Labels"]
    assert labels[MODELS_LABEL] == f"{NAME}/{VERSION}@sha256:{sha256}"

    container = start_container(image, "--read-only")
    container.wait_healthy()
    assert served_models(container.url) == {NAME: [VERSION]}
    index = repository_index(container.url)
    assert [(m["name"], m["version"], m["sha256"]) for m in index] == [(NAME, VERSION, sha256)]


@pytest.mark.timeout(2400)
def test_test_image_holds_the_label_to_what_the_server_serves(
    docker: Docker, base_image: str, model_url: tuple[str, str], tmp_path: Path
) -> None:
    url, sha256 = model_url
    code, output = build_from_url(url, sha256)
    assert code == 0, output[-3000:]
    tested = script("test-image.sh", Variant.cpu.local_tag, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr[-3000:]
    assert "models=1 versions match the image's label" in tested.stdout

    lying = f"{NAME}/{VERSION}@sha256:{'0' * 64}"  # the same image, labelled with another file
    (tmp_path / "Dockerfile").write_text(
        f'FROM {Variant.cpu.local_tag}\nLABEL {MODELS_LABEL}="{lying}"\n'
    )
    docker.run("build", "--tag", LYING_IMAGE, str(tmp_path))
    try:
        tested = script("test-image.sh", LYING_IMAGE, timeout=600)
    finally:
        docker.run("rmi", LYING_IMAGE, check=False)
    assert tested.returncode != 0
    assert f"label only {lying}; server only {NAME}/{VERSION}@sha256:{sha256}" in tested.stderr
