"""A docker-registry of a test's own on 127.0.0.1 that takes one login (htpasswd, bcrypt):
`pusher` / `right`. Debian's docker-registry, installed by ./scripts/setup.sh test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

USERNAME, PASSWORD = "pusher", "right"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bcrypt_hash(password: str) -> str:
    """The registry's htpasswd takes bcrypt only: libcrypt's, through the stdlib crypt module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("this libcrypt cannot make bcrypt hashes for the registry's htpasswd")
    return hashed


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[str]:
    """A docker-registry of its own with htpasswd (bcrypt) auth; its address."""
    registry = shutil.which("docker-registry")
    if registry is None:
        pytest.skip("Debian's docker-registry is not installed (./scripts/setup.sh test)")
    hashed = bcrypt_hash(PASSWORD)
    port = free_port()
    (tmp_path / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
    (tmp_path / "config.yml").write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: test, path: {tmp_path / 'htpasswd'}}}}}\n"
    )
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen(
        [registry, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=log
    )
    try:
        for _ in range(100):
            if listening(port) or process.poll() is not None:
                break
            time.sleep(0.1)
        assert listening(port), (tmp_path / "registry.log").read_text()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()
        log.close()
