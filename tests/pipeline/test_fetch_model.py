"""dockerfiles/fetch-model.py, the build-time download of --model-url, run here against an
HTTP server on 127.0.0.1: the digest decides, a redirect may not leave https, a URL with
credentials or another scheme is refused, and every failure is one line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "dockerfiles" / "fetch-model.py"
MODEL = b"onnx bytes of a model"
SHA = hashlib.sha256(MODEL).hexdigest()


class Files(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/model.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL)))
            self.end_headers()
            self.wfile.write(MODEL)
        else:  # a redirect that would leave TLS (here: to plain http)
            self.send_response(302)
            self.send_header("Location", f"http://{self.headers['Host']}/model.onnx")
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch(url: str, sha256: str, models: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), url, sha256, "scorer", "2", str(models)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_right_digest_places_the_model(server: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "bundled" / "1").mkdir(parents=True)  # replaced, not merged
    done = fetch(f"http://{server}/model.onnx", SHA, models)
    assert done.returncode == 0, done.stderr
    assert [p.relative_to(models).as_posix() for p in models.rglob("*.onnx")] == [
        "scorer/2/model.onnx"
    ]
    assert (models / "scorer/2/model.onnx").read_bytes() == MODEL
    assert (models / "scorer/2/model.onnx").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("path", "sha256", "message"),
    [
        ("/model.onnx", "0" * 64, f"has sha256 {SHA}, expected {'0' * 64}"),
        ("/moved", SHA, "only https redirects are followed"),
    ],
)
def test_a_failed_fetch_is_one_line_and_writes_nothing(
    server: str, tmp_path: Path, path: str, sha256: str, message: str
) -> None:
    models = tmp_path / "models"
    (models / "bundled" / "1").mkdir(parents=True)
    done = fetch(f"http://{server}{path}", sha256, models)
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert [p.name for p in models.iterdir()] == ["bundled"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "is not an http(s) URL"),
        ("ftp://models.example/m.onnx", "is not an http(s) URL"),
        ("https://bot:s3cret@models.example/m.onnx", "holds a user or password"),
    ],
)
def test_other_schemes_and_credentials_are_refused(url: str, message: str, tmp_path: Path) -> None:
    done = fetch(url, SHA, tmp_path / "models")
    assert done.returncode == 1
    assert message in done.stderr and "s3cret" not in done.stderr
