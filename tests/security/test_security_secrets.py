"""The registry password reaches `publish` only as a Dagger Secret.

The whole plan `publish` hands to the engine (every query, every nested object: builds, build
args, labels, auth) is walked with the recording stand-in engine of tests/pipeline/plan.py.
The password's plaintext may appear in exactly one place: the `setSecret` call that created
the Secret (how a secret reaches the engine's memory - never its cache, layers or logs). Logs
and output of the run are captured and searched too.

With Docker: credential files in a checkout (.env, .docker/config.json, .git-credentials)
reach no layer, label, history entry or build log of the images, even `COPY . /app/`; and
the image built exactly as the publish plan asks (Dockerfile, build args) holds no password.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagger
import pytest
from dagger import dag

from onnx_serving.docker_cli import build_command
from onnx_serving.variants import Variant
from tests.images.docker_support import METADATA
from tests.images.image_files import scan_image
from tests.pipeline.conftest import make_module
from tests.pipeline.plan import Call, FakeEngine, calls, fake_engine, only

from .conftest import REPO

# Unique, so a hit can only come from this secret.
MARKER = "sec-marker-registry-password-7f3a91c0e2"


def leaks(value: Any, where: str = "") -> Iterator[str]:
    """Paths within a recorded plan where MARKER appears, except the Secret's own creation."""
    if isinstance(value, dagger.Secret):
        chain = calls(value)
        if [c.name for c in chain] != ["setSecret"]:  # a derived secret: walk how it's made
            yield from leaks(chain, where)
    elif isinstance(value, dagger.Container | dagger.Directory | dagger.File):
        yield from leaks(calls(value), where)
    elif isinstance(value, Call):
        yield from leaks(value.args, f"{where}/{value.type_name}.{value.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from leaks(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            yield from leaks(item, f"{where}[{n}]")
    elif MARKER in str(value):
        yield where


def test_leak_walker_finds_a_copied_password() -> None:
    """The walker itself can fail: a password copied into a build arg or env is found."""
    leaked = dag.container().with_env_variable("REGISTRY_PASSWORD", MARKER)
    assert list(leaks(calls(leaked))) == ["[1]/Container.withEnvVariable.value"]
    build_arg = dagger.BuildArg(name="PASSWORD", value=MARKER)
    image = dag.directory().docker_build(build_args=[build_arg])
    assert len(list(leaks(calls(image)))) == 1
    safe = dag.container().with_secret_variable("P", dag.set_secret("p", MARKER))
    assert list(leaks(calls(safe))) == []


def record_publish() -> tuple[FakeEngine, str, dagger.Secret]:
    """Run `publish v1.2.3` with MARKER as the password against the recording engine."""
    module = make_module()
    password = dag.set_secret("registry-password", MARKER)
    clean = '{"SchemaVersion": 2, "Results": []}'

    def contents(chain: list[Call]) -> str:  # every scan is clean, files come from the repo
        if chain[-2].args.get("path") == "/scan/report.json":
            return clean
        return str(FakeEngine().answer(chain))

    with fake_engine({"contents": contents}) as engine:
        out = asyncio.run(
            module.publish(
                tag="v1.2.3",
                registry=["127.0.0.1:5000"],
                repository="security/onnx-serving",
                username="release-bot",
                password=password,
            )
        )
    return engine, out, password


def test_publish_plan_and_logs_hold_no_plaintext(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's included
    engine, out, password = record_publish()
    publishes = engine.queries_named("publish")
    assert len(publishes) == 2  # the engine pushes each variant's immutable tag; the module's
    floating = [step for step in engine.registry.steps if step.startswith("put ")]
    assert len(floating) == 7  # registry calls put the 6 floating tags and annotate an index
    # The one read of the value is the login round trip (registry_login, before any build),
    # which runs in the module's own process; no query sent to the engine carries it.
    reads = [q for q in engine.queries if q[-1].name == "plaintext"]
    assert len(reads) == 1 and reads[0][0].name == "setSecret"
    assert engine.logins == [
        ("127.0.0.1:5000", "security/onnx-serving", "release-bot", MARKER, "push,pull")
    ]
    for query in engine.queries:
        if query not in reads:
            assert list(leaks(query)) == [], "the password's plaintext is in the plan"
    # The auth step received the very Secret object, not a copy of its value.
    for query in publishes:
        auth = [c for c in query if c.name == "withRegistryAuth"]
        assert [a.args["secret"] for a in auth] == [password]
    assert engine.leaf_names().count("plaintext") == 1  # the login's read, and no other
    captured = capfd.readouterr()
    assert MARKER not in out + captured.out + captured.err + caplog.text


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_image_built_from_the_publish_plan_holds_no_password(
    docker: Any, base_image: str, build_secret: Path
) -> None:
    """Build, with Docker, the linux/amd64 cpu image exactly as the recorded publish plan
    asks the engine to (Dockerfile, build args, target), and search every layer, label and
    history entry for the password."""
    engine, _, _ = record_publish()
    (first_push,) = engine.queries_named("publish")[:1]
    variants = first_push[-1].args["platformVariants"]
    builds = [only(calls(v), "dockerBuild").args for v in variants]
    (amd64,) = [b for b in builds if b.get("platform") == "linux/amd64"]
    args = [f"--build-arg={a['name']}={a['value']}" for a in amd64.get("buildArgs", [])]
    if amd64.get("target"):
        args += ["--target", amd64["target"]]
    tag = "security-leakcheck:publish-plan"
    try:
        log = build(
            docker,
            REPO,
            tag,
            "--file",
            str(REPO / amd64["dockerfile"]),
            "--secret",
            f"id=ca_bundle,src={build_secret}",
            *args,
        )
        labels = docker.output("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
        findings, layers = scan_image(docker.binary, tag, NEEDLES, PLANTED_NAMES)
    finally:
        docker.run("rmi", "--force", tag, check=False)
    assert '"org.opencontainers.image.version":"1.2.3"' in labels  # the plan's args were used
    assert layers >= 3
    assert findings == [], findings
    assert MARKER not in log + labels


# Where a registry password typically sits in a developer's checkout.
PLANTED_CREDENTIALS = {
    ".env": f"REGISTRY_PASSWORD={MARKER}\n",
    ".docker/config.json": (
        '{"auths": {"127.0.0.1:5000": {"auth": "'
        + base64.b64encode(f"release-bot:{MARKER}".encode()).decode()
        + '"}}}\n'
    ),
    ".git-credentials": f"https://release-bot:{MARKER}@127.0.0.1%3a5000\n",
}
NEEDLES = [MARKER.encode(), base64.b64encode(f"release-bot:{MARKER}".encode())]
PLANTED_NAMES = [".env", ".docker", ".git-credentials"]


@pytest.fixture
def context_with_credentials(repo_tree: Path, tmp_path: Path) -> Path:
    """The build context (what git would commit) plus credential files at its root."""
    context = tmp_path / "context"
    shutil.copytree(repo_tree, context)
    for relative, text in PLANTED_CREDENTIALS.items():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        (context / relative).write_text(text)
    return context


def build(docker: Any, context: Path, tag: str, *args: str) -> str:
    """`docker build` of `context`; returns the build log."""
    done = docker.run("build", "--progress=plain", "--tag", tag, *args, str(context), timeout=900)
    return str(done.stdout + done.stderr)


@pytest.mark.docker
@pytest.mark.timeout(2400)  # a cold build cache means a full pip install
@pytest.mark.parametrize("variant", [Variant.basic, Variant.cpu])  # basic does `COPY . /app/`
def test_credentials_in_the_checkout_reach_no_layer_label_or_log(
    variant: Variant,
    docker: Any,
    base_image: str,
    build_secret: Path,
    context_with_credentials: Path,
) -> None:
    tag = f"security-leakcheck:{variant}"
    command = build_command(
        docker.binary,
        variant,
        tag,
        METADATA,
        ca_bundle=build_secret,
        context=str(context_with_credentials),
    )
    try:
        done = docker.run(*command[1:], timeout=900)
        log = str(done.stdout + done.stderr)
        findings, layers = scan_image(docker.binary, tag, NEEDLES, PLANTED_NAMES)
    finally:
        docker.run("rmi", "--force", tag, check=False)
    assert layers >= 3
    assert findings == [], findings  # layers, config, labels, history
    assert MARKER not in log


@pytest.mark.docker
def test_the_leak_check_sees_credentials_without_dockerignore(
    docker: Any, base_image: str, context_with_credentials: Path
) -> None:
    """Control: the same context copied wholesale, .dockerignore removed, is caught."""
    (context_with_credentials / ".dockerignore").unlink()
    (context_with_credentials / "Dockerfile.leaky").write_text(f"FROM {base_image}\nCOPY . /ctx/\n")
    tag = "security-leakcheck:control"
    try:
        build(
            docker,
            context_with_credentials,
            tag,
            "--file",
            str(context_with_credentials / "Dockerfile.leaky"),
        )
        findings, _ = scan_image(docker.binary, tag, NEEDLES, PLANTED_NAMES)
    finally:
        docker.run("rmi", "--force", tag, check=False)
    assert {f.path for f in findings} >= {"ctx/.env", "ctx/.docker/config.json"}, findings
