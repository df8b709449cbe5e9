"""Fetch one model during an image build and check its digest (the `models` stage of
dockerfiles/Dockerfile; the builds pass --model-url and --model-sha256 as build args).

    python3 fetch-model.py URL SHA256 NAME VERSION MODELS_DIR

Replaces MODELS_DIR with NAME/VERSION/model.onnx. A digest that differs fails the build,
naming both digests; nothing is written then. Stdlib only: it runs in the base image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path

# The build secret a TLS-intercepting proxy's CA bundle is mounted as (images.CA_BUNDLE_SECRET_ID).
CA_BUNDLE = Path("/run/secrets/ca_bundle")
CHUNK = 1 << 20
TIMEOUT_S = 60


def fetch(url: str, sha256: str, name: str, version: str, models_dir: Path) -> None:
    context = ssl.create_default_context()
    if CA_BUNDLE.is_file():
        context.load_verify_locations(cafile=str(CA_BUNDLE))
    digest = hashlib.sha256()
    with (
        tempfile.NamedTemporaryFile(delete=False) as out,
        urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response,
    ):
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
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
    except OSError as exc:
        raise SystemExit(f"fetch-model: cannot fetch {url}: {exc}") from None
