"""Which model file each served version is: its sha256 in the repository index, in the
model's config and in the startup log; MODEL_VERSION names a single MODEL_PATH file's version.
Test-owned models in tmp_path, real `python -m service` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.live_server import REPO, running_server, server_env
from tests.service.model_factory import fixed_shape_model, identity_model, lookup_model


def write_model(path: Path, data: bytes) -> str:
    """Write a model file; its sha256 (hex)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_repository_index_and_config_name_each_version_by_sha256(tmp_path: Path) -> None:
    root = tmp_path / "models"
    digests = {
        ("identity", "1"): write_model(
            root / "identity" / "1" / "model.onnx", identity_model().SerializeToString()
        ),
        ("identity", "2"): write_model(
            root / "identity" / "2" / "model.onnx", fixed_shape_model().SerializeToString()
        ),
        ("lookup", "7"): write_model(
            root / "lookup" / "7" / "model.onnx", lookup_model().SerializeToString()
        ),
    }
    for unserved in ("0", "01", "latest"):  # not versions (nor in the images' models label)
        write_model(root / "lookup" / unserved / "model.onnx", b"not loaded")
    with running_server({"MODEL_REPOSITORY": str(root)}, tmp_path / "server.log") as server:
        index = httpx.post(f"{server.base}/v2/repository/index").json()
        assert index == [
            {"name": name, "version": version, "state": "READY", "sha256": digest}
            for (name, version), digest in digests.items()
        ]
        for (name, version), digest in digests.items():
            url = f"{server.base}/v2/models/{name}/versions/{version}/config"
            parameters = httpx.get(url).json()["parameters"]
            assert parameters["sha256"] == {"string_value": digest}
        # The latest version's config, as a client that names no version sees it.
        latest = httpx.get(f"{server.base}/v2/models/identity/config").json()
        assert latest["parameters"]["sha256"] == {"string_value": digests["identity", "2"]}
        log = server.log()
    for (name, version), digest in digests.items():
        assert f"loaded model {name} version {version} from " in log
        assert f"(sha256 {digest})" in log


def test_model_version_names_a_single_file(tmp_path: Path) -> None:
    digest = write_model(tmp_path / "export.onnx", lookup_model().SerializeToString())
    env = {"MODEL_PATH": str(tmp_path / "export.onnx"), "MODEL_NAME": "scorer"}
    with running_server(env | {"MODEL_VERSION": "12"}, tmp_path / "server.log") as server:
        index = httpx.post(f"{server.base}/v2/repository/index").json()
        assert index == [{"name": "scorer", "version": "12", "state": "READY", "sha256": digest}]
        assert httpx.get(f"{server.base}/v2/models/scorer").json()["versions"] == ["12"]
        ready = httpx.get(f"{server.base}/v2/models/scorer/versions/12/ready")
        assert ready.json() == {"name": "scorer", "version": "12", "ready": True}
        assert httpx.get(f"{server.base}/v2/models/scorer/versions/1/ready").status_code == 404


def test_model_version_defaults_to_1_and_a_checked_sha256_is_the_one_shown(
    tmp_path: Path,
) -> None:
    digest = write_model(tmp_path / "lookup.onnx", lookup_model().SerializeToString())
    env = {"MODEL_PATH": str(tmp_path / "lookup.onnx"), "MODEL_SHA256": digest}
    with running_server(env, tmp_path / "server.log") as server:
        index = httpx.post(f"{server.base}/v2/repository/index").json()
        assert index == [{"name": "lookup", "version": "1", "state": "READY", "sha256": digest}]


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5", "+2"])
def test_a_bad_model_version_stops_startup_naming_it(tmp_path: Path, value: str) -> None:
    model = tmp_path / "lookup.onnx"
    write_model(model, lookup_model().SerializeToString())
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=server_env({"PORT": "1", "MODEL_PATH": str(model), "MODEL_VERSION": value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: invalid MODEL_VERSION={value!r}: must be a positive integer (a version "
        "number: 1, 2, 3, ...)"
    ]
