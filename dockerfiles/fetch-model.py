"""Fetch one model during an image build and check its digest (the `models` stage of
dockerfiles/Dockerfile; the builds pass --model-url and --model-sha256 as build args).

    python3 fetch-model.py URL SHA256 NAME VERSION MODELS_DIR

Replaces MODELS_DIR with NAME/VERSION/model.onnx. A digest that differs fails the build,
naming both digests; nothing is written then. Only http(s) URLs without a user or password;
a redirect may lead to https only; the whole download has a deadline. Every failure is one
line. Stdlib only: it runs in the base image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The build secret a TLS-intercepting proxy's CA bundle is mounted as (images.CA_BUNDLE_SECRET_ID).
CA_BUNDLE = Path("/run/secrets/ca_bundle")
CHUNK = 1 << 20
READ_TIMEOUT_S = 60  # per read: a stalled server
DEADLINE_S = 3600  # the whole download: a server that trickles forever


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """A redirect may not leave TLS (nor go to ftp: or file:)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            raise ValueError(f"redirected to {newurl!r}: only https redirects are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL holds a user or password (build args are logged)")


def fetch(url: str, sha256: str, name: str, version: str, models_dir: Path) -> None:
    check_url(url)
    context = ssl.create_default_context()
    if CA_BUNDLE.is_file():
        context.load_verify_locations(cafile=str(CA_BUNDLE))
    opener = urllib.request.build_opener(
        _HttpsRedirectsOnly, urllib.request.HTTPSHandler(context=context)
    )
    digest = hashlib.sha256()
    deadline = time.monotonic() + DEADLINE_S
    with (
        tempfile.NamedTemporaryFile(delete=False) as out,
        opener.open(url, timeout=READ_TIMEOUT_S) as response,
    ):
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            if time.monotonic() > deadline:
                os.unlink(out.name)
                raise TimeoutError(f"the download took over {DEADLINE_S} s")
    if digest.hexdigest() != sha256:
        os.unlink(out.name)
        raise SystemExit(
            f"fetch-model: {url} has sha256 {digest.hexdigest()}, expected {sha256} "
            "(--model-sha256): refusing to bake it in"
        )
    shutil.rmtree(models_dir, ignore_errors=True)
    target = models_dir / name / version / "model.onnx"
    target.parent.mkdir(parents=True)
    shutil.move(out.name, target)
    for path in (models_dir, target.parent.parent, target.parent):
        path.chmod(0o755)
    target.chmod(0o644)  # root-owned, readable by the server's user
    print(f"fetch-model: {url} -> {target} (sha256 {sha256})")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    url, sha256, name, version, models_dir = sys.argv[1:]
    try:
        fetch(url, sha256, name, version, Path(models_dir))
    except Exception as exc:  # any failure of the download: one line, the build stops
        shown = urlsplit(url)._replace(netloc=urlsplit(url).netloc.rpartition("@")[2]).geturl()
        raise SystemExit(f"fetch-model: cannot fetch {shown}: {exc}") from None
