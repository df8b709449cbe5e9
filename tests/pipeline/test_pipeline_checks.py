"""The plans of the checks (`test`, `lint`, `scan`) and of `sbom` and `benchmark`.

Every command a container executes must be the list from commands.py / trivy.py, which the
image and security tests and scripts/ run for real with Docker and the pinned binaries.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dagger import dag

from onnx_serving import commands, trivy
from onnx_serving.variants import ALL_DOCKERFILES
from tests.trivy_reports import report_text, vulnerability

from .conftest import make_module
from .plan import (
    REPO,
    Call,
    FakeEngine,
    calls,
    dockerfile_target,
    fake_engine,
    find,
    names,
    only,
    repository_models_label,
)

LOCK_INSTALL = commands.pip_install_lock_command(f"/tmp/{commands.TEST_LOCK}")


def _exec_args(chain: list[Call]) -> list[list[str]]:
    return [c.args["args"] for c in find(chain, "withExec")]


def _assert_checker(chain: list[Call]) -> None:
    """The check container: dev image + requirements/test.lock (hashed) + the checkout."""
    assert dockerfile_target(only(chain, "dockerBuild")) == ("dockerfiles/Dockerfile", "dev")
    assert [c.args["name"] for c in find(chain, "withUser")] == ["root", "10001"]
    lock = only(chain, "withFile").args
    assert lock["path"] == f"/tmp/{commands.TEST_LOCK}"
    assert names(calls(lock["source"]))[-1] == "file"
    assert calls(lock["source"])[-1].args == {"path": commands.TEST_LOCK}
    install = names(chain).index("withExec")
    assert chain[install].args["args"] == LOCK_INSTALL  # as root, before the checkout
    assert "--require-hashes" in LOCK_INSTALL
    assert names(chain).index("withMountedDirectory") > install
    mount = only(chain, "withMountedDirectory").args
    assert mount["path"] == "/app"
    assert mount["owner"] == "10001"  # the image's user can write pytest/hypothesis files
    assert names(calls(mount["source"])) == ["host", "directory"]
    assert only(chain, "withWorkdir").args == {"path": "/app"}


def _check_execs(chain: list[Call]) -> list[list[str]]:
    """The commands run in the check container after its tools are installed."""
    return _exec_args(chain)[1:]


def _runs(engine: FakeEngine) -> list[list[Call]]:
    """The queries that ran a command (stdout)."""
    return [q for q in engine.queries if q[-1].name == "stdout"]


def test_test_runs_the_readme_test_command_with_an_engine_then_smokes_the_image(
    module: Any, engine: FakeEngine
) -> None:
    out = asyncio.run(module.test())
    suite, smoke = _runs(engine)
    # The suite: the cpu Dockerfile's base, the checkout copied in, root, dockerd allowed.
    assert only(suite, "from").args == {"address": "python:3.11-slim-bookworm"}
    assert only(suite, "withDirectory").args["path"] == "/src"
    assert only(suite, "withWorkdir").args == {"path": "/src"}
    assert "withUser" not in names(suite)  # root: setup.sh installs packages, starts dockerd
    state = only(suite, "withMountedCache").args
    assert state["path"] == "/var/lib/docker"
    assert calls(state["cache"])[-1].args == {"key": "onnx-serving-test-docker"}
    assert only(suite, "withEnvVariable").args == {"name": "REQUIRE_DOCKER", "value": "1"}
    run = only(suite, "withExec").args
    assert run["args"] == ["./scripts/test.sh"]
    assert run["insecureRootCapabilities"] is True
    # ... which is exactly what CI on this machine runs (.ci/run's last line).
    ci_line = (REPO / ".ci/run").read_text().strip().splitlines()[-1]
    assert ci_line == "REQUIRE_DOCKER=1 ./scripts/test.sh"

    _assert_checker(smoke)
    binding = only(smoke, "withServiceBinding").args
    assert binding["alias"] == "server"
    server = calls(binding["service"])
    assert dockerfile_target(only(server, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    assert names(server)[-2:] == ["withExposedPort", "asService"]
    assert server[-1].args == {"useEntrypoint": True}
    label = repository_models_label()  # what the smoke test holds the server to
    assert _check_execs(smoke) == [commands.smoke_command("server:8000", models_label=label)]
    assert "test suite:" in out and "smoke test" in out


def test_the_test_suite_trusts_the_ca_bundle_for_pip_and_the_image_builds(
    engine: FakeEngine,
) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----x"))
    asyncio.run(module.test())
    suite = _runs(engine)[0]
    mount = only(suite, "withMountedSecret").args
    assert mount["path"] == "/run/secrets/ca_bundle"
    assert calls(mount["source"])[0].args["name"] == "ca_bundle"
    env = {c.args["name"]: c.args["value"] for c in find(suite, "withEnvVariable")}
    # pip reads PIP_CERT; the image builds (scripts/build.sh) read CA_BUNDLE.
    assert env["PIP_CERT"] == env["CA_BUNDLE"] == "/run/secrets/ca_bundle"


def test_lint_runs_each_linter_in_the_check_container(module: Any, engine: FakeEngine) -> None:
    asyncio.run(module.lint())
    dockerfiles = list(ALL_DOCKERFILES)  # == the files on disk (test_pipeline_module.py)
    expected = [
        commands.ruff_command(),
        commands.mypy_command(),
        commands.hadolint_command(dockerfiles),
        commands.zizmor_command(".github"),
        commands.workflow_check_command(),
    ]
    ran = []
    for query in _runs(engine):
        _assert_checker(query)
        ran.extend(_check_execs(query))
    assert sorted(ran) == sorted(expected)


def test_a_failing_linter_fails_lint(module: Any) -> None:
    def stdout(chain: list[Call]) -> str:
        if _check_execs(chain)[-1][0] == "zizmor":
            raise RuntimeError("zizmor: 1 finding")  # what an ExecError would carry
        return "ok"

    with fake_engine({"stdout": stdout}), pytest.raises(RuntimeError, match="zizmor"):
        asyncio.run(module.lint())


CVE = "CVE-2026-12345"  # the finding of the canned reports


def scan_answers(report: str) -> dict[str, Any]:
    """The fake engine answers a report read with `report`, other files from the host."""

    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return report
        return str(FakeEngine().answer(chain))  # the repo's own .trivyignore.yaml

    return {"contents": contents}


def scanned_images(engine: FakeEngine) -> list[list[Call]]:
    """The image plans whose tarballs were scanned, in order."""
    reports = [
        q for q in engine.queries if len(q) > 1 and q[-2].args.get("path") == "/scan/report.json"
    ]
    return [calls(only(q, "withMountedFile").args["source"]) for q in reports]


def test_scan_runs_trivy_on_the_image_tarball_with_a_locked_db_cache(module: Any) -> None:
    with fake_engine(scan_answers(report_text(vulnerability(CVE, "MEDIUM", "1.0.1")))) as engine:
        out = asyncio.run(module.scan(variant="cpu"))
    ignore_file, scan = engine.queries
    assert names(ignore_file)[-2:] == ["file", "contents"]
    assert ignore_file[-2].args == {"path": ".trivyignore.yaml"}

    _assert_checker(scan)  # the hash-pinned Trivy of requirements/test.lock
    tarball = only(scan, "withMountedFile").args
    assert tarball["path"] == "/scan/image.tar"
    image = calls(tarball["source"])
    assert dockerfile_target(only(image, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    assert image[-1].name == "asTarball"
    cache = only(scan, "withMountedCache").args
    assert cache["path"] == "/cache/trivy"
    assert calls(cache["cache"])[-1].name == "cacheVolume"
    assert cache["sharing"] == "LOCKED"  # two scans never write the DB at once
    assert _check_execs(scan) == [
        commands.trivy_db_command("/cache/trivy"),
        trivy.image_scan_command(
            "/scan/image.tar",
            "/scan/report.json",
            scanners=("vuln", *trivy.OFFLINE_SCANNERS),
            cache_dir="/cache/trivy",
        ),
    ]
    assert out.startswith("trivy gate PASS: cpu image")  # MEDIUM is below HIGH,CRITICAL


def test_scan_without_a_variant_scans_every_published_variant(module: Any) -> None:
    """`dagger check` and the weekly scan call `scan` without arguments: the table decides."""
    with fake_engine(scan_answers(report_text(vulnerability(CVE, "LOW", "1.0.1")))) as engine:
        out = asyncio.run(module.scan())
    scanned = [dockerfile_target(only(image, "dockerBuild")) for image in scanned_images(engine)]
    assert scanned == [("dockerfiles/Dockerfile", "cpu"), ("dockerfiles/Dockerfile", "gpu")]
    assert [line.split(":")[1] for line in out.splitlines() if "gate PASS" in line] == [
        " cpu image at HIGH,CRITICAL",
        " gpu image at HIGH,CRITICAL",
    ]


def test_scan_fails_at_the_severity_gate(module: Any) -> None:
    with fake_engine(scan_answers(report_text(vulnerability(CVE, "HIGH", "1.0.1")))):
        with pytest.raises(RuntimeError, match=r"FAIL.*\n.*CVE-2026-12345"):
            asyncio.run(module.scan())
        # The same finding passes when the threshold is CRITICAL only.
        assert asyncio.run(module.scan(severity="CRITICAL")).startswith("trivy gate PASS")


def test_scan_ignore_unfixed(module: Any) -> None:
    with fake_engine(scan_answers(report_text(vulnerability(CVE, "CRITICAL")))):  # no fixed version
        with pytest.raises(RuntimeError, match="CVE-2026-12345"):
            asyncio.run(module.scan(variant="gpu"))
        assert asyncio.run(module.scan(variant="gpu", ignore_unfixed=True)).startswith(
            "trivy gate PASS"
        )


def test_sbom_is_trivy_cyclonedx_of_the_tarball(module: Any, engine: FakeEngine) -> None:
    sbom = asyncio.run(module.sbom(variant="gpu"))
    chain = calls(sbom)
    _assert_checker(chain)
    image = calls(only(chain, "withMountedFile").args["source"])
    assert dockerfile_target(only(image, "dockerBuild")) == ("dockerfiles/Dockerfile", "gpu")
    assert _check_execs(chain) == [
        trivy.sbom_command("/scan/image.tar", "/scan/sbom.cdx.json", cache_dir="/scan/cache")
    ]
    assert chain[-1].name == "file" and chain[-1].args == {"path": "/scan/sbom.cdx.json"}
    assert engine.queries == []  # a File is returned, nothing ran yet


def test_benchmark_loads_the_served_image(module: Any, engine: FakeEngine) -> None:
    asyncio.run(module.benchmark(requests=300, concurrency=4, batch=32, model="mlp"))
    [query] = _runs(engine)
    _assert_checker(query)
    server = calls(only(query, "withServiceBinding").args["service"])
    assert dockerfile_target(only(server, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    # The check container's interpreter runs the load generator with the arguments given.
    assert _check_execs(query) == [
        [
            *("python", "-m", "onnx_serving.loadgen", "--url", "server:8000", "--model", "mlp"),
            *("--requests", "300", "--concurrency", "4", "--batch", "32"),
        ]
    ]


def test_check_container_pip_trusts_the_ca_bundle_only_while_installing(
    engine: FakeEngine,
) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----x"))
    asyncio.run(module.benchmark(requests=10))
    [query] = _runs(engine)
    order = names(query)
    mount = only(query, "withMountedSecret").args
    assert mount["path"] == "/run/secrets/ca_bundle"
    assert calls(mount["source"])[0].args["name"] == "ca_bundle"
    assert next(c.args for c in find(query, "withEnvVariable")) == {
        "name": "PIP_CERT",
        "value": "/run/secrets/ca_bundle",
    }
    install = order.index("withExec")
    assert order.index("withMountedSecret") < install
    # The dev image build's own secret mounts (build.py unmounts both it may leave), then pip's.
    unmounts = [i for i, name in enumerate(order) if name == "withoutMount"]
    assert len(unmounts) == 3
    assert unmounts[1] < order.index("withMountedSecret") < install < unmounts[2]
    assert only(query, "withoutEnvVariable").args == {"name": "PIP_CERT"}
