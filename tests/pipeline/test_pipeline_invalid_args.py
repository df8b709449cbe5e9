"""Every invalid argument: a one-line error naming the bad value, before anything runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dagger import dag

from .conftest import make_module
from .plan import FakeEngine

# (function, keyword arguments, text the message must contain)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("build", {"variant": "tpu"}, "'tpu'"),
    ("build", {"variant": "CPU"}, "'CPU'"),
    ("build", {"platform": "linux/s390x"}, "'linux/s390x'"),
    ("build", {"platform": "arm64"}, "'arm64'"),
    ("build", {"variant": "gpu", "platform": "linux/arm64"}, "'linux/arm64'"),
    ("serve", {"variant": ""}, "''"),
    ("sbom", {"variant": "rocm"}, "'rocm'"),
    ("scan", {"variant": "x86"}, "'x86'"),
    ("scan", {"severity": "SEVERE"}, "'SEVERE'"),
    ("scan", {"severity": ""}, "''"),
    ("benchmark", {"variant": "tpu"}, "'tpu'"),
    ("benchmark", {"requests": 0}, "0"),
    ("benchmark", {"concurrency": -4}, "-4"),
    ("benchmark", {"batch": 0}, "batch"),
    ("publish", {"tag": "latest"}, "'latest'"),
    ("publish", {"tag": "v1"}, "'v1'"),
    ("publish", {"tag": "v1.2.3+build.7"}, "'v1.2.3+build.7'"),
    ("publish", {"tag": "v1.2.3", "registry": ["https://ghcr.io"]}, "'https://ghcr.io'"),
    ("publish", {"tag": "v1.2.3", "registry": ["ghcr.io/acme"]}, "'ghcr.io/acme'"),
    ("publish", {"tag": "v1.2.3", "registry": ["user:pw@ghcr.io"]}, "'user:pw@ghcr.io'"),
    ("publish", {"tag": "v1.2.3", "registry": ["localhost:99999"]}, "'localhost:99999'"),
    ("publish", {"tag": "v1.2.3", "registry": [""]}, "''"),
    ("publish", {"tag": "v1.2.3\n"}, "'v1.2.3\\n'"),  # `$` alone accepts a trailing newline
    ("publish", {"tag": "v1.2.3", "registry": ["ghcr.io\n"]}, "'ghcr.io\\n'"),
    ("publish", {"tag": "v1.2.3", "registry": ["localhost:5000\n"]}, "'localhost:5000\\n'"),
    ("publish", {"tag": "v1.2.3", "registry": ["ghcr.io", "ghcr.io"]}, "'ghcr.io' is given twice"),
    (
        "publish",
        {
            "tag": "v1",
            "registry": ["ghcr.io", "docker.io"],
            "username": "bot",
            "password": "SECRET",
        },
        "for several, give --docker-config",
    ),
    (
        "publish",
        {"tag": "v1.2.3", "username": "bot", "password": "SECRET", "docker_config": "SECRET"},
        "not both",
    ),
    ("publish", {"tag": "v1.2.3", "repository": "acme/onnx serving"}, "'acme/onnx serving'"),
    ("publish", {"tag": "v1.2.3", "repository": "acme/-onnx"}, "'acme/-onnx'"),
    ("publish", {"tag": "v1.2.3", "repository": "acme//onnx"}, "'acme//onnx'"),
    ("publish", {"tag": "v1.2.3", "repository": "acme/onnx:1.0"}, "'acme/onnx:1.0'"),
    ("publish", {"tag": "v1.2.3", "repository": "/acme"}, "'/acme'"),
    ("publish", {"tag": "v1.2.3", "repository": "acme/onnx\n"}, "'acme/onnx\\n'"),
    ("publish", {"tag": "v1.2.3", "repository": "a/" + "b" * 260}, "exceeds"),
    ("publish", {"tag": "v1.2.3", "variants": ["cpu", "arm"]}, "'arm'"),
    ("publish", {"tag": "v1.2.3", "variants": []}, "no variant"),
    ("publish", {"tag": "v1.2.3", "username": "bot"}, "'bot'"),
    ("publish", {"tag": "v1.2.3", "username": ""}, "''"),
    ("publish", {"tag": "v1.2.3", "password": "SECRET"}, "--username"),
    ("publish", {}, "--edge"),  # neither a release nor an edge build
    ("publish", {"tag": "v1.2.3", "edge": True}, "--edge"),  # both
    ("publish", {"edge": True}, "revision ''"),  # edge needs the commit SHA
    ("publish", {"tag": "v1.2.3", "variants": ["dev"]}, "'dev' is not published"),
    ("publish", {"tag": "v1.2.3", "oidc_request_url": "SECRET"}, "--oidc-request-token"),
    ("publish", {"tag": "v1.2.3", "oidc_request_token": "SECRET"}, "--oidc-request-url"),
    (
        "publish",
        {"tag": "v1.2.3", "oidc_request_url": "SECRET", "oidc_request_token": "SECRET"},
        "--password",
    ),
    ("scan_published", {"tags": ["latest", "v1.2.3"]}, "'v1.2.3'"),
    ("scan_published", {"registry": "https://ghcr.io"}, "'https://ghcr.io'"),
    ("scan_published", {"username": "bot"}, "'bot'"),
    ("build", {"model_name": "my model"}, "'my model'"),
    ("build", {"model_version": 0}, "--model-version 0"),
    ("build", {"model_url": "ftp://models.example/m.onnx", "model_sha256": "a" * 64}, "'ftp:"),
    ("build", {"model_url": "https://models.example/m.onnx"}, "--model-sha256"),
    ("build", {"model_sha256": "a" * 64}, "--model-url"),
    ("serve", {"model_url": "https://models.example/m.onnx", "model_sha256": "abc"}, "'abc'"),
    (
        "publish",
        {"tag": "v1.2.3", "model_url": "https://models.example/", "model_sha256": "a" * 64},
        "--model-name",
    ),
]


@pytest.mark.parametrize(("function", "kwargs", "named"), INVALID)
def test_invalid_argument_fails_before_anything_runs(
    function: str, kwargs: dict[str, Any], named: str, engine: FakeEngine
) -> None:
    kwargs = {  # secrets stand in for the CLI's env://... arguments
        k: dag.set_secret(k, "s3cr3t-value") if v == "SECRET" else v for k, v in kwargs.items()
    }
    if function in ("publish", "scan_published"):
        kwargs.setdefault("repository", "acme/onnx")
    # A CA bundle too: even the secret re-registration must not happen before validation.
    module = make_module(ca_bundle=dag.set_secret("ca", "pem"))
    with pytest.raises(ValueError) as err:
        asyncio.run(getattr(module, function)(**kwargs))
    message = str(err.value)
    assert "\n" not in message, message
    assert named in message, message
    assert engine.queries == engine.identity_queries == []  # nothing read, built or pushed
    assert engine.logins == []  # not even the registry asked
