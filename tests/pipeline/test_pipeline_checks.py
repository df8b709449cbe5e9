"""The plans of the checks (`test`, `lint`, `scan`) and of `sbom` and `benchmark`.

Every command a container executes must be the list from commands.py / trivy.py, which the
image and security tests run for real with Docker and the pinned binaries.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dagger import dag

from onnx_serving import commands, trivy
from onnx_serving.toolbox import dev_requirements
from onnx_serving.variants import ALL_DOCKERFILES, PUBLISHED

from .conftest import make_module
from .plan import REPO, Call, FakeEngine, calls, dockerfile_target, fake_engine, find, names, only


def _exec_args(chain: list[Call]) -> list[list[str]]:
    return [c.args["args"] for c in find(chain, "withExec")]


DEV_TOOLS = commands.pip_install_command(dev_requirements((REPO / "pyproject.toml").read_text()))


def _assert_dev_checkout(chain: list[Call]) -> None:
    """The check container: dev image + the pyproject dev tools + the checkout over /app."""
    assert dockerfile_target(only(chain, "dockerBuild")) == ("dockerfiles/Dockerfile", "dev")
    assert [c.args["name"] for c in find(chain, "withUser")] == ["root", "10001"]
    install = names(chain).index("withExec")
    assert chain[install].args["args"] == DEV_TOOLS  # as root, before the checkout is mounted
    assert names(chain).index("withMountedDirectory") > install
    mount = only(chain, "withMountedDirectory").args
    assert mount["path"] == "/app"
    assert mount["owner"] == "10001"  # the image's user can write pytest/hypothesis files
    assert names(calls(mount["source"])) == ["host", "directory"]
    assert only(chain, "withWorkdir").args == {"path": "/app"}


def _check_execs(chain: list[Call]) -> list[list[str]]:
    """The commands run in the check container after its tools are installed."""
    return _exec_args(chain)[1:]


def _check_runs(engine: FakeEngine) -> list[list[Call]]:
    """The queries that ran a command; the others only read pyproject.toml or the CA secret."""
    runs = [q for q in engine.queries if q[-1].name == "stdout"]
    for read in (q for q in engine.queries if q[-1].name not in ("stdout", "plaintext")):
        assert names(read)[-2:] == ["file", "contents"], names(read)
        assert read[-2].args == {"path": "pyproject.toml"}
    return runs


def test_test_runs_unit_tests_then_the_smoke_client_against_the_image(
    module: Any, engine: FakeEngine
) -> None:
    out = asyncio.run(module.test())
    unit, smoke = _check_runs(engine)
    assert names(unit)[-1] == names(smoke)[-1] == "stdout"
    _assert_dev_checkout(unit)
    assert _check_execs(unit) == [commands.unit_test_command()]

    _assert_dev_checkout(smoke)
    binding = only(smoke, "withServiceBinding").args
    assert binding["alias"] == "server"
    server = calls(binding["service"])
    assert dockerfile_target(only(server, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    assert names(server)[-2:] == ["withExposedPort", "asService"]
    assert server[-1].args == {"useEntrypoint": True}
    assert _check_execs(smoke) == [commands.smoke_command("server:8000")]
    assert "unit tests:" in out and "smoke test" in out


def test_lint_runs_each_linter_in_the_dev_image(module: Any, engine: FakeEngine) -> None:
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
    for query in _check_runs(engine):
        _assert_dev_checkout(query)
        ran.extend(_check_execs(query))
    assert sorted(ran) == sorted(expected)


def test_a_failing_linter_fails_lint(module: Any) -> None:
    def stdout(chain: list[Call]) -> str:
        if _check_execs(chain)[-1][0] == "zizmor":
            raise RuntimeError("zizmor: 1 finding")  # what an ExecError would carry
        return "ok"

    with fake_engine({"stdout": stdout}), pytest.raises(RuntimeError, match="zizmor"):
        asyncio.run(module.lint())


def _report(*vulnerabilities: dict[str, str]) -> str:
    """A report in Trivy's JSON format (SchemaVersion 2) for the scanned tarball."""
    result = {"Target": "python-pkg", "Class": "lang-pkgs", "Type": "python-pkg"}
    return json.dumps(
        {
            "SchemaVersion": 2,
            "ArtifactName": "/scan/image.tar",
            "ArtifactType": "container_image",
            "Results": [{**result, "Vulnerabilities": list(vulnerabilities)}],
        }
    )


def _vulnerability(severity: str, fixed: str = "") -> dict[str, str]:
    return {
        "VulnerabilityID": "CVE-2026-12345",
        "PkgName": "examplelib",
        "InstalledVersion": "1.0.0",
        "FixedVersion": fixed,
        "Severity": severity,
        "Title": "example flaw",
    }


def _scan_engine(report: str) -> Any:
    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return report
        return str(FakeEngine().answer(chain))  # the default: the repo's own .trivyignore.yaml

    return fake_engine({"contents": contents})


def test_scan_runs_trivy_on_the_image_tarball_with_a_cached_db(module: Any) -> None:
    with _scan_engine(_report(_vulnerability("MEDIUM", fixed="1.0.1"))) as engine:
        out = asyncio.run(module.scan(variant="cpu"))
    ignore_file, scan = engine.queries
    assert names(ignore_file)[-2:] == ["file", "contents"]
    assert ignore_file[-2].args == {"path": ".trivyignore.yaml"}

    assert scan[0].name == "container"
    assert only(scan, "from").args == {"address": trivy.TRIVY_IMAGE}
    tarball = only(scan, "withMountedFile").args
    assert tarball["path"] == "/scan/image.tar"
    image = calls(tarball["source"])
    assert dockerfile_target(only(image, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    assert image[-1].name == "asTarball"
    cache = only(scan, "withMountedCache").args
    assert cache["path"] == "/cache/trivy"
    assert calls(cache["cache"])[-1].name == "cacheVolume"
    assert _exec_args(scan) == [
        commands.trivy_db_command("/cache/trivy"),
        trivy.image_scan_command(
            "/scan/image.tar",
            "/scan/report.json",
            scanners=("vuln", *trivy.OFFLINE_SCANNERS),
            cache_dir="/cache/trivy",
        ),
    ]
    assert out.startswith("trivy gate PASS")  # MEDIUM is below HIGH,CRITICAL


def test_scan_without_a_variant_scans_every_published_variant(module: Any) -> None:
    """`dagger check` and the weekly scan call `scan` without arguments: the table decides."""
    with _scan_engine(_report(_vulnerability("LOW", fixed="1.0.1"))) as engine:
        out = asyncio.run(module.scan())
    reports = [q for q in engine.queries if q[-2].args.get("path") == "/scan/report.json"]
    scanned = [
        dockerfile_target(only(calls(only(q, "withMountedFile").args["source"]), "dockerBuild"))
        for q in reports
    ]
    assert scanned == [("dockerfiles/Dockerfile", v.spec.target) for v in PUBLISHED]
    assert scanned == [("dockerfiles/Dockerfile", "cpu"), ("dockerfiles/Dockerfile", "gpu")]
    assert [line.split(":")[1] for line in out.splitlines() if "gate PASS" in line] == [
        " cpu image at HIGH,CRITICAL",
        " gpu image at HIGH,CRITICAL",
    ]


def test_scan_fails_at_the_severity_gate(module: Any) -> None:
    with _scan_engine(_report(_vulnerability("HIGH", fixed="1.0.1"))):
        with pytest.raises(RuntimeError, match=r"FAIL.*\n.*CVE-2026-12345"):
            asyncio.run(module.scan())
        # The same finding passes when the threshold is CRITICAL only.
        assert asyncio.run(module.scan(severity="CRITICAL")).startswith("trivy gate PASS")


def test_scan_ignore_unfixed(module: Any) -> None:
    with _scan_engine(_report(_vulnerability("CRITICAL"))):  # no fixed version
        with pytest.raises(RuntimeError, match="CVE-2026-12345"):
            asyncio.run(module.scan(variant="gpu"))
        assert asyncio.run(module.scan(variant="gpu", ignore_unfixed=True)).startswith(
            "trivy gate PASS"
        )


def test_sbom_is_trivy_cyclonedx_of_the_tarball(module: Any, engine: FakeEngine) -> None:
    sbom = asyncio.run(module.sbom(variant="gpu"))
    chain = calls(sbom)
    assert only(chain, "from").args == {"address": trivy.TRIVY_IMAGE}
    image = calls(only(chain, "withMountedFile").args["source"])
    assert dockerfile_target(only(image, "dockerBuild")) == ("dockerfiles/Dockerfile", "gpu")
    assert _exec_args(chain) == [trivy.sbom_command("/scan/image.tar", "/scan/sbom.cdx.json")]
    assert chain[-1].name == "file" and chain[-1].args == {"path": "/scan/sbom.cdx.json"}
    assert engine.queries == []  # a File is returned, nothing ran yet


def test_benchmark_loads_the_served_image(module: Any, engine: FakeEngine) -> None:
    asyncio.run(module.benchmark(requests=300, concurrency=4, batch=32))
    [query] = _check_runs(engine)
    _assert_dev_checkout(query)
    server = calls(only(query, "withServiceBinding").args["service"])
    assert dockerfile_target(only(server, "dockerBuild")) == ("dockerfiles/Dockerfile", "cpu")
    assert _check_execs(query) == [
        commands.loadgen_command("server:8000", requests=300, concurrency=4, batch=32)
    ]


def test_check_container_pip_trusts_the_ca_bundle_only_while_installing(
    engine: FakeEngine,
) -> None:
    module = make_module(ca_bundle=dag.set_secret("cli-ca", "-----BEGIN CERTIFICATE-----x"))
    asyncio.run(module.benchmark(requests=10))
    [query] = _check_runs(engine)
    order = names(query)
    mount = only(query, "withMountedSecret").args
    assert mount["path"] == "/run/secrets/ca_bundle"
    assert calls(mount["source"])[0].args["name"] == "ca_bundle"
    assert only(query, "withEnvVariable").args == {
        "name": "PIP_CERT",
        "value": "/run/secrets/ca_bundle",
    }
    install = order.index("withExec")
    assert order.index("withMountedSecret") < install < order.index("withoutMount")
    assert only(query, "withoutMount").args == {"path": "/run/secrets/ca_bundle"}
    assert only(query, "withoutEnvVariable").args == {"name": "PIP_CERT"}
