"""The plan of `publish`: build once, verify (smoke + scan gate) those very images, then push
them under every tag, registry auth by secret only, optional keyless signing.

The fake engine answers each `publish(address)` with a stand-in digest of the pushed images,
and every scan with a clean Trivy report; the assertions are on what the module asked the
engine to do, in which order, and with which objects.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from dagger import dag

from onnx_serving import commands
from onnx_serving.emulation import CPUINFO_PATH

from .conftest import make_module
from .git_checkout import git_repository
from .plan import (
    NATIVE_PLATFORM,
    Call,
    FakeEngine,
    calls,
    dockerfile_target,
    fake_engine,
    find,
    names,
    only,
    render,
    repository_models_label,
)

MARKER = "ghp_publish-token-unique-5c1e2d"
REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO = "ghcr.io/acme/onnx-serving"
REPO_ONNX = "ghcr.io/acme/onnx"
CLEAN_REPORT = json.dumps({"SchemaVersion": 2, "ArtifactName": "/scan/image.tar", "Results": []})


def answers(report: str = CLEAN_REPORT, stdout: Any = None) -> dict[str, Any]:
    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return report
        return str(FakeEngine().answer(chain))

    found: dict[str, Any] = {"contents": contents}
    if stdout is not None:
        found["stdout"] = stdout
    return found


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with fake_engine(answers()) as recording:
        yield recording


def _publish(module: Any, **kwargs: Any) -> str:
    result: str = asyncio.run(module.publish(**kwargs))
    return result


def _builds(publish_call: Call) -> list[dict[str, Any]]:
    """The dockerBuild arguments of each platform variant of one publish call."""
    return [only(calls(c), "dockerBuild").args for c in publish_call.args["platformVariants"]]


def _smokes(engine: FakeEngine) -> list[list[Call]]:
    return [q for q in engine.queries if q[-1].name == "stdout" and find(q, "withServiceBinding")]


def _scans(engine: FakeEngine) -> list[list[Call]]:
    return [
        q for q in engine.queries if len(q) > 1 and q[-2].args.get("path") == "/scan/report.json"
    ]


def test_release_publishes_every_tag_of_every_variant(module: Any, engine: FakeEngine) -> None:
    token = dag.set_secret("registry-token", MARKER)
    out = _publish(
        module,
        tag="v1.2.3",
        registry=["ghcr.io"],
        repository="acme/onnx-serving",
        username="release-bot",
        password=token,
    )
    expected = [f"{REPO}:{t}" for t in ("1.2.3", "1.2", "1", "latest")] + [
        f"{REPO}:{t}-gpu" for t in ("1.2.3", "1.2", "1", "latest")
    ]
    queries = engine.queries_named("publish")  # the engine pushes the immutable tags
    assert [q[-1].args["address"] for q in queries] == [f"{REPO}:1.2.3", f"{REPO}:1.2.3-gpu"]
    # and the module puts the same manifest under the floating tags (and annotates an index)
    floating = [f"put {t}" for t in ("1.2", "1", "latest", "1.2-gpu", "1-gpu", "latest-gpu")]
    assert [s for s in engine.registry.steps if s.startswith("put ")] == ["put 1.2.3", *floating]
    assert [line.split("@")[0] for line in out.splitlines()] == expected  # one per tag
    digests = [line.split("@")[1] for line in out.splitlines()]
    assert len(set(digests[:4])) == len(set(digests[4:])) == 1  # a variant's tags: one digest

    for query in queries:
        gpu = query[-1].args["address"].endswith("-gpu")
        builds = _builds(query[-1])
        platforms = [b["platform"] for b in builds]
        targets = {dockerfile_target(b) for b in builds}
        if gpu:
            assert platforms == ["linux/amd64"]
            assert targets == {("dockerfiles/Dockerfile", "gpu")}
        else:  # one multi-platform index
            assert platforms == ["linux/amd64", "linux/arm64"]
            assert targets == {("dockerfiles/Dockerfile", "cpu")}
        for build in builds:  # the release version is the image's VERSION label
            assert {"name": "VERSION", "value": "1.2.3"} in build["buildArgs"]


def test_only_the_images_that_passed_smoke_and_scan_are_pushed(
    module: Any, engine: FakeEngine
) -> None:
    _publish(module, tag="v1.0.0", repository="acme/onnx-serving")
    leaves = engine.leaf_names()
    first_push = leaves.index("publish")
    # Every check ran (and was awaited) before the first push.
    smokes, scans = _smokes(engine), _scans(engine)
    assert all(engine.queries.index(q) < first_push for q in [*smokes, *scans])
    # The smoke tests and scans saw exactly the images that were pushed, one each.
    services = [calls(only(q, "withServiceBinding").args["service"]) for q in smokes]
    tarballs = [calls(only(q, "withMountedFile").args["source"]) for q in scans]
    assert all(names(s)[-2:] == ["withExposedPort", "asService"] for s in services)
    assert all(names(t)[-1] == "asTarball" for t in tarballs)
    # An emulated platform's server is given its own /proc/cpuinfo (a mount, not a layer:
    # onnx_serving/emulation.py); the image under it is the pushed one.
    emulated = [s for s in services if names(s)[-3:-2] == ["withMountedFile"]]
    assert [only(s, "withMountedFile").args["path"] for s in emulated] == [CPUINFO_PATH]
    smoked = {_plan(s[:-3] if s in emulated else s[:-2]) for s in services}
    scanned = {_plan(t[:-1]) for t in tarballs}
    pushed = {
        _plan(calls(image))
        for q in engine.queries_named("publish")
        for image in q[-1].args["platformVariants"]
    }
    assert len(pushed) == 3  # cpu amd64 + arm64, gpu amd64
    assert smoked == pushed
    assert scanned == pushed


def _plan(chain: list[Call]) -> str:
    """A container's plan as text: equal text, equal container (the engine's ID is its plan)."""
    return render([[c.type_name, c.name, c.args] for c in chain])


def test_every_platform_answers_an_inference_and_holds_the_models_label(
    module: Any, engine: FakeEngine
) -> None:
    """The emulated platform (arm64 here) gets the same smoke test as the native one: an
    inference of every model and the image's models label held against the server."""
    _publish(module, tag="v1.0.0", repository="acme/onnx-serving", variants=["cpu"])
    by_platform = {}
    for query in _smokes(engine):
        service = calls(only(query, "withServiceBinding").args["service"])
        by_platform[only(service, "dockerBuild").args["platform"]] = find(query, "withExec")[-1]
    assert NATIVE_PLATFORM == "linux/amd64"
    expected = commands.smoke_command("server:8000", models_label=repository_models_label())
    assert by_platform == {"linux/amd64": ANY, "linux/arm64": ANY}
    for platform, smoke in by_platform.items():
        assert smoke.args["args"] == expected, platform
    assert f"--models-label={repository_models_label()}" in expected


def test_a_failing_smoke_test_pushes_nothing(module: Any) -> None:
    def stdout(chain: list[Call]) -> str:
        if find(chain, "withServiceBinding"):
            raise RuntimeError("smoke: FAIL: server:8000 model=all: output 'label' missing")
        return "ok"

    with fake_engine(answers(stdout=stdout)) as engine, pytest.raises(RuntimeError, match="smoke"):
        _publish(module, tag="v1.0.0", repository="acme/onnx-serving")
    assert "publish" not in engine.leaf_names()


def test_a_finding_at_the_gate_pushes_nothing(module: Any) -> None:
    finding = {
        "Target": "python-pkg",
        "Vulnerabilities": [
            {
                "VulnerabilityID": "CVE-2026-4242",
                "PkgName": "examplelib",
                "InstalledVersion": "1.0.0",
                "FixedVersion": "1.0.1",
                "Severity": "CRITICAL",
            }
        ],
    }
    report = json.dumps({"SchemaVersion": 2, "Results": [finding]})
    with fake_engine(answers(report)) as engine, pytest.raises(RuntimeError, match="CVE-2026-4242"):
        _publish(module, tag="v1.0.0", repository="acme/onnx-serving")
    assert "publish" not in engine.leaf_names()


def test_registry_auth_uses_the_secret_by_reference(module: Any, engine: FakeEngine) -> None:
    token = dag.set_secret("registry-token", MARKER)
    _publish(module, tag="v2.0.0", repository="acme/onnx", username="bot", password=token)
    for query in engine.queries_named("publish"):
        assert names(query) == ["container", "withRegistryAuth", "publish"]
        auth = query[1].args
        assert auth["address"] == "ghcr.io"
        assert auth["username"] == "bot"
        assert auth["secret"] is token  # the very Secret given, passed on as a reference
        # The token's value is nowhere in what the engine is asked to do.
        assert MARKER not in render([c.args for c in query])
    # The module reads the token once, for its login round trip, and passes it nowhere else.
    assert engine.leaf_names().count("plaintext") == 1
    assert engine.logins == [("ghcr.io", "acme/onnx", "bot", MARKER, "push,pull")]


def test_v1_2_publishes_the_release_line(engine: FakeEngine) -> None:
    module = make_module(revision="0123456789abcdef0123456789abcdef01234567")
    out = _publish(module, tag="v1.2", registry=["localhost:5000"], repository="acme/onnx")
    tags = [line.split("@")[0].rpartition(":")[2] for line in out.splitlines()]
    # Every tag of a release line floats: its commit's tag is the immutable one.
    assert tags == [
        *("1.2", "1", "latest", "sha-0123456"),
        *("1.2-gpu", "1-gpu", "latest-gpu", "sha-0123456-gpu"),
    ]
    # Without credentials the engine's own registry config is used: no auth step.
    assert all(names(q) == ["container", "publish"] for q in engine.queries_named("publish"))


def test_prerelease_moves_no_floating_tag(module: Any, engine: FakeEngine) -> None:
    out = _publish(module, tag="v1.3.0-rc.1", repository="acme/onnx")
    assert [line.split("@")[0] for line in out.splitlines()] == [
        "ghcr.io/acme/onnx:1.3.0-rc.1",
        "ghcr.io/acme/onnx:1.3.0-rc.1-gpu",
    ]


def test_a_backport_does_not_move_latest(module: Any, engine: FakeEngine, tmp_path: Path) -> None:
    # Both kinds of tag ref count: v1.5.0 is a loose ref, v2.0.0 a packed (and peeled) one.
    git = git_repository(
        tmp_path / "checkout",
        ["tag", "v1.4.1"],
        ["tag", "-a", "-m", "2.0.0", "v2.0.0"],
        ["pack-refs", "--all"],
        ["tag", "v1.5.0"],
    )
    for tag, moved in (("v1.4.2", ["1.4.2", "1.4"]), ("v1.5.1", ["1.5.1", "1.5", "1"])):
        out = _publish(
            module,
            tag=tag,
            repository="acme/onnx",
            variants=["cpu"],
            git=git,
        )
        assert [line.split("@")[0].rpartition(":")[2] for line in out.splitlines()] == moved


def test_edge_publishes_edge_and_the_commit(engine: FakeEngine) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    module = make_module(revision=revision)
    out = _publish(module, edge=True, repository="acme/onnx")
    assert [line.split("@")[0] for line in out.splitlines()] == [
        "ghcr.io/acme/onnx:edge",
        "ghcr.io/acme/onnx:sha-0123456",
        "ghcr.io/acme/onnx:edge-gpu",
        "ghcr.io/acme/onnx:sha-0123456-gpu",
    ]
    for build in _builds(engine.queries_named("publish")[0][-1]):
        assert {"name": "VERSION", "value": "0.0.0-edge.0123456"} in build["buildArgs"]


def test_repository_is_lowercased_like_image_names(module: Any, engine: FakeEngine) -> None:
    # GitHub's `github.repository` keeps capitals ("Acme/Onnx-Serving"); image names cannot.
    _publish(module, tag="v1.0.0", repository="Acme/Onnx-Serving", variants=["cpu"])
    address = engine.queries_named("publish")[0][-1].args["address"]
    assert address == "ghcr.io/acme/onnx-serving:1.0.0"


def test_variants_select_what_is_published(module: Any, engine: FakeEngine) -> None:
    _publish(module, tag="v1.0.0", repository="acme/onnx", variants=["gpu"])
    addresses = [q[-1].args["address"] for q in engine.queries_named("publish")]
    assert addresses == ["ghcr.io/acme/onnx:1.0.0-gpu"]  # the engine pushes the immutable tag
    moved = [step for step in engine.registry.steps if step.startswith("put ")]
    assert moved == [f"put {t}-gpu" for t in ("1.0", "1", "latest")]


def test_published_images_carry_the_module_labels(engine: FakeEngine) -> None:
    module = make_module(revision="feedbeef", source_url="https://github.com/acme/onnx")
    _publish(module, tag="v3.1.4", repository="acme/onnx", variants=["cpu"])
    for build in _builds(engine.queries_named("publish")[0][-1]):
        assert {"name": "REVISION", "value": "feedbeef"} in build["buildArgs"]
        assert {"name": "SOURCE_URL", "value": "https://github.com/acme/onnx"} in build["buildArgs"]


def test_every_published_build_gets_the_ca_bundle_secret(engine: FakeEngine) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----y"))
    _publish(module, tag="v1.0.0", repository="acme/onnx")
    # Read twice: trusted by the login round trip, and re-registered once for the builds.
    assert engine.leaf_names().count("plaintext") == 2
    for query in engine.queries_named("publish"):
        for build in _builds(query[-1]):
            [secret] = build["secrets"]
            assert calls(secret)[0].args["name"] == "ca_bundle"


def test_signing_is_keyless_cosign_by_digest_with_the_documents_attached(
    engine: FakeEngine,
) -> None:
    module = make_module()
    token = dag.set_secret("registry-token", MARKER)
    oidc_url = dag.set_secret("oidc-url", "https://oidc.example.invalid/token")
    oidc_token = dag.set_secret("oidc-token", "oidc-request-token-9d2f")
    out = _publish(
        module,
        tag="v1.0.0",
        repository="acme/onnx",
        username="bot",
        password=token,
        oidc_request_url=oidc_url,
        oidc_request_token=oidc_token,
    )
    [query] = engine.queries_named("sync")  # one signing step, after every immutable push
    pushed = {line.split(":")[1].split("@")[0]: line.split("@")[1] for line in out.splitlines()}
    [cosign] = [c.args for c in find(query, "withFile") if c.args["path"] == "/tmp/cosign/cosign"]
    assert calls(cosign["source"])[0:2] == [
        Call("Query", "container", {}),
        Call("Container", "from", {"address": commands.COSIGN_IMAGE}),
    ]
    assert "@sha256:" in commands.COSIGN_IMAGE  # pinned by digest
    secret_vars = {c.args["name"]: c.args["secret"] for c in find(query, "withSecretVariable")}
    assert secret_vars == {
        "REGISTRY_PASSWORD": token,
        "ACTIONS_ID_TOKEN_REQUEST_URL": oidc_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc_token,
    }
    execs = [c.args["args"] for c in find(query, "withExec")][1:]  # after the lock install
    assert execs[0] == ["sh", "-c", commands.COSIGN_LOGIN_SCRIPT]
    # The file put on PATH above signs each index and every platform manifest under it, by
    # digest, then each attached document, then attests each platform image's provenance.
    assert execs[1:3] == [
        ["cosign", "sign", "--yes", "--recursive", f"{REPO_ONNX}@{pushed['1.0.0']}"],
        ["cosign", "sign", "--yes", "--recursive", f"{REPO_ONNX}@{pushed['1.0.0-gpu']}"],
    ]
    attached = execs[3:9]  # an SBOM and a provenance of each of the three platform images
    assert all(a[:3] == ["cosign", "sign", "--yes"] and len(a) == 4 for a in attached)
    attests = execs[9:]
    assert len(attests) == 3 and all(
        a[:-2] == ["cosign", "attest", "--yes", "--type", "slsaprovenance1", "--predicate"]
        for a in attests
    )
    # No key material and no token value anywhere in the plan: keyless, secrets by reference.
    text = render([c.args for c in query])
    assert "--key" not in text and MARKER not in text and "oidc-request-token-9d2f" not in text
    # Only the registry token is read (the login round trip); the OIDC secrets never are.
    assert engine.leaf_names().count("plaintext") == 1
    assert [login[3] for login in engine.logins] == [MARKER]


def test_one_release_goes_to_every_registry_with_the_docker_config_s_logins(
    engine: FakeEngine,
) -> None:
    config = {
        "auths": {
            "ghcr.io": {"auth": base64.b64encode(b"bot:ghcr-t0ken").decode()},
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hub-t0ken").decode()},
        }
    }
    out = _publish(
        make_module(revision=REVISION),
        tag="v1.0.0",
        repository="acme/onnx",
        registry=["ghcr.io", "docker.io"],
        docker_config=dag.set_secret("docker-config", json.dumps(config)),
        variants=["cpu"],
        oidc_request_url=dag.set_secret("oidc-url", "https://oidc.example.invalid/token"),
        oidc_request_token=dag.set_secret("oidc-token", "oidc-request-token-9d2f"),
    )
    registries = ("ghcr.io/acme/onnx", "docker.io/acme/onnx")
    tags = ("1.0.0", "1.0", "1", "latest")
    assert [line.split("@")[0] for line in out.splitlines()] == [
        f"{r}:{t}" for r in registries for t in tags
    ]
    # Built, smoke-tested and scanned once; the very images pushed to both registries.
    pushes = engine.queries_named("publish")
    assert [q[-1].args["address"] for q in pushes] == [f"{r}:1.0.0" for r in registries]
    assert render(pushes[0][-1].args["platformVariants"]) == render(
        pushes[1][-1].args["platformVariants"]
    )
    assert len(_smokes(engine)) == 2  # amd64 and arm64, not per registry
    # Each registry is asked with its own login from the config, and signed into with it.
    assert [(login[0], login[2], login[3]) for login in engine.logins] == [
        ("ghcr.io", "bot", "ghcr-t0ken"),
        ("docker.io", "hub", "hub-t0ken"),
    ]
    signings = engine.queries_named("sync")
    hosts = [
        {c.args["name"]: c.args["value"] for c in find(q, "withEnvVariable")}["REGISTRY"]
        for q in signings
    ]
    assert hosts == ["ghcr.io", "docker.io"]


def test_signing_into_a_registry_the_docker_config_has_no_login_for_is_refused(
    engine: FakeEngine,
) -> None:
    config = {"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:t0ken").decode()}}}
    refused = r"^signing pushes signatures to quay\.io: --docker-config"
    with pytest.raises(ValueError, match=refused):
        _publish(
            make_module(),
            tag="v1.0.0",
            repository="acme/onnx",
            registry=["ghcr.io", "quay.io"],
            docker_config=dag.set_secret("docker-config", json.dumps(config)),
            oidc_request_url=dag.set_secret("oidc-url", "https://oidc.example.invalid/token"),
            oidc_request_token=dag.set_secret("oidc-token", "oidc-request-token-9d2f"),
        )
    assert "publish" not in engine.leaf_names()
