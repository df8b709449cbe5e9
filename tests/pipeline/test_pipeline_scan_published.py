"""`scan-published` and the gate's verdict over several images.

`scan-published` pulls what users pull, every published variant under each tag (the variant's
suffix from the variant table added), from the registry and repository given, and judges those
very images at the threshold given; one image that fails the gate fails the whole verdict, and
the report says which image it was. The fake engine answers each image's Trivy report by the
image it was asked to scan; the assertions are on what was pulled and on the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from dagger import dag

from onnx_serving.variants import PUBLISHED, Variant
from tests.trivy_reports import report_text, vulnerability

from .conftest import make_module
from .plan import Call, FakeEngine, calls, fake_engine, find, names, only

DEFAULT_REPOSITORY = "ghcr.io/onnx-serving/onnx-serving"  # the function's defaults


CLEAN = report_text()


def _is_report(chain: list[Call]) -> bool:
    return len(chain) > 1 and chain[-2].args.get("path") == "/scan/report.json"


def scanned_image(chain: list[Call]) -> list[Call]:
    """The plan of the image whose tarball a report read scanned."""
    return calls(only(chain, "withMountedFile").args["source"])


def pulled_address(image: list[Call]) -> str:
    return str(only(image, "from").args["address"])


def reports_by(report_of: Callable[[list[Call]], str]) -> dict[str, Any]:
    """Fake-engine answers: each scanned image's report is `report_of(image plan)`."""

    def contents(chain: list[Call]) -> str:
        if _is_report(chain):
            return report_of(scanned_image(chain))
        return str(FakeEngine().answer(chain))  # the repo's own .trivyignore.yaml

    return {"contents": contents}


def every_image(report: str) -> dict[str, Any]:
    return reports_by(lambda _image: report)


def pulled(engine: FakeEngine) -> list[list[Call]]:
    """The plans of the images scanned, in order."""
    return [scanned_image(q) for q in engine.queries if _is_report(q)]


def _scan_published(**kwargs: Any) -> str:
    kwargs.setdefault("repository", "onnx-serving/onnx-serving")
    result: str = asyncio.run(make_module().scan_published(**kwargs))
    return result


def _verdict_lines(text: str) -> dict[str, str]:
    """artifact -> PASS/FAIL, from the report's `trivy gate PASS: <artifact> at …` lines."""
    verdicts = {}
    for line in text.splitlines():
        if line.startswith("trivy gate "):
            head, _, rest = line.removeprefix("trivy gate ").partition(": ")
            verdicts[rest.rsplit(" at ", 1)[0]] = head
    return verdicts


# ----- what is pulled ------------------------------------------------------------------------


def test_default_is_latest_of_every_published_variant_with_its_suffix() -> None:
    with fake_engine(every_image(CLEAN)) as engine:
        out = _scan_published()
    expected = [f"{DEFAULT_REPOSITORY}:latest{v.spec.tag_suffix}" for v in PUBLISHED]
    assert f"{DEFAULT_REPOSITORY}:latest-gpu" in expected  # the gpu row's suffix
    images = pulled(engine)
    assert [pulled_address(image) for image in images] == expected
    for variant, image in zip(PUBLISHED, images, strict=True):
        # The registry's image itself, pulled for the variant's (first) platform, is scanned.
        assert names(image) == ["container", "from", "asTarball"]
        assert image[0].args == {"platform": variant.spec.platforms[0]}
    assert _verdict_lines(out) == dict.fromkeys(expected, "PASS")


def test_each_tag_is_pulled_with_every_variant_suffix_from_the_registry_given() -> None:
    with fake_engine(every_image(CLEAN)) as engine:
        out = _scan_published(
            registry="localhost:5000", repository="Acme/Onnx", tags=["edge", "1.2"]
        )
    expected = {
        f"localhost:5000/acme/onnx:{tag}{v.spec.tag_suffix}"
        for tag in ("edge", "1.2")
        for v in PUBLISHED
    }
    assert {"localhost:5000/acme/onnx:edge-gpu", "localhost:5000/acme/onnx:1.2-gpu"} <= expected
    addresses = [pulled_address(image) for image in pulled(engine)]
    assert sorted(addresses) == sorted(expected)  # each exactly once
    assert set(_verdict_lines(out)) == expected  # the report names every image it judged


def test_credentials_log_in_to_the_registry_given_by_secret_reference() -> None:
    token = dag.set_secret("registry-token", "scan-token-marker-71c3")
    with fake_engine(every_image(CLEAN)) as engine:
        _scan_published(registry="registry.example:5000", username="reader", password=token)
    images = pulled(engine)
    assert len(images) == len(PUBLISHED)
    for image in images:
        assert names(image) == ["container", "withRegistryAuth", "from", "asTarball"]
        auth = only(image, "withRegistryAuth").args
        assert auth["address"] == "registry.example:5000"
        assert auth["username"] == "reader"
        assert auth["secret"] is token
    # Read once, by the login round trip before anything is pulled; in no engine call.
    assert engine.leaf_names().count("plaintext") == 1
    assert engine.logins == [
        (
            "registry.example:5000",
            "onnx-serving/onnx-serving",
            "reader",
            "scan-token-marker-71c3",
            "pull",
        )
    ]


def test_anonymous_pulls_log_in_nowhere() -> None:
    with fake_engine(every_image(CLEAN)) as engine:
        _scan_published()
    assert all(not find(image, "withRegistryAuth") for image in pulled(engine))


@pytest.mark.parametrize(
    "tag",
    ["latest-gpu", "edge-gpu", "v1.2", "1.2.3-rc.1", "xlatest", "edge2", "1.2.3.4", "latest\n"],
)
def test_a_tag_that_is_not_one_users_pull_is_refused_before_anything_runs(
    tag: str, engine: FakeEngine
) -> None:
    # Tags are given without a suffix (each variant's is added), and matched whole.
    with pytest.raises(ValueError) as refused:
        _scan_published(tags=["latest", tag])
    assert repr(tag) in str(refused.value) and "\n" not in str(refused.value)
    assert engine.queries == []


# ----- the threshold and --ignore-unfixed ----------------------------------------------------


def test_severity_sets_the_threshold() -> None:
    high = report_text(vulnerability("CVE-2026-1111", "HIGH", fixed="1.0.1"))
    with fake_engine(every_image(high)):
        with pytest.raises(RuntimeError, match="CVE-2026-1111"):
            _scan_published()  # HIGH and above by default
        out = _scan_published(severity="CRITICAL")
    assert set(_verdict_lines(out).values()) == {"PASS"}
    assert " at CRITICAL: none" in out and "skipped 1 below threshold" in out

    medium = report_text(vulnerability("CVE-2026-2222", "MEDIUM", fixed="1.0.1"))
    with fake_engine(every_image(medium)):
        assert set(_verdict_lines(_scan_published()).values()) == {"PASS"}
        with pytest.raises(RuntimeError, match=r"at MEDIUM,HIGH,CRITICAL: 1 MEDIUM"):
            _scan_published(severity="MEDIUM")


def test_ignore_unfixed_reaches_the_gate() -> None:
    unfixed = report_text(vulnerability("CVE-2026-3333", "CRITICAL"))  # no fixed version yet
    with fake_engine(every_image(unfixed)):
        with pytest.raises(RuntimeError, match="CVE-2026-3333"):
            _scan_published()
        out = _scan_published(ignore_unfixed=True)
    assert set(_verdict_lines(out).values()) == {"PASS"}
    assert out.count("1 unfixed (ignore-unfixed)") == len(PUBLISHED)

    fixed = report_text(vulnerability("CVE-2026-4444", "CRITICAL", fixed="1.0.1"))
    with fake_engine(every_image(fixed)), pytest.raises(RuntimeError, match="CVE-2026-4444"):
        _scan_published(ignore_unfixed=True)  # a fix exists: it still fails


# ----- one verdict over several images -------------------------------------------------------

FAILING = report_text(vulnerability("CVE-2026-5555", "CRITICAL", fixed="2.0.0"))


@pytest.mark.parametrize("failing", [f"edge{v.spec.tag_suffix}" for v in PUBLISHED])
def test_one_failing_published_image_fails_the_verdict_and_is_named(failing: str) -> None:
    bad = f"{DEFAULT_REPOSITORY}:{failing}"

    def report_of(image: list[Call]) -> str:
        return FAILING if pulled_address(image) == bad else CLEAN

    with fake_engine(reports_by(report_of)), pytest.raises(RuntimeError) as failed:
        _scan_published(tags=["latest", "edge"])
    verdicts = _verdict_lines(str(failed.value))
    assert verdicts.pop(bad) == "FAIL"
    assert verdicts == {  # every other image passed, and the report still lists it
        f"{DEFAULT_REPOSITORY}:{tag}{v.spec.tag_suffix}": "PASS"
        for tag in ("latest", "edge")
        for v in PUBLISHED
        if f"{tag}{v.spec.tag_suffix}" != failing
    }
    assert "CVE-2026-5555" in str(failed.value)


def _built(image: list[Call]) -> tuple[str, str]:
    build = only(image, "dockerBuild").args
    return str(build.get("target", "")), str(build.get("platform", ""))


@pytest.mark.parametrize("failing", list(PUBLISHED))
def test_scan_fails_when_one_of_the_variants_fails(failing: Variant) -> None:
    def report_of(image: list[Call]) -> str:
        return FAILING if _built(image)[0] == failing.spec.target else CLEAN

    with fake_engine(reports_by(report_of)), pytest.raises(RuntimeError) as failed:
        asyncio.run(make_module().scan())
    verdicts = _verdict_lines(str(failed.value))
    assert verdicts == {f"{v} image": "FAIL" if v == failing else "PASS" for v in PUBLISHED}


def test_publish_pushes_nothing_when_one_platform_image_fails() -> None:
    # Only the emulated arm64 cpu image has the finding: the whole release stops.
    def report_of(image: list[Call]) -> str:
        return FAILING if _built(image) == ("cpu", "linux/arm64") else CLEAN

    with fake_engine(reports_by(report_of)) as engine, pytest.raises(RuntimeError) as failed:
        asyncio.run(make_module().publish(tag="v1.0.0", repository="acme/onnx"))
    assert "publish" not in engine.leaf_names()
    verdicts = _verdict_lines(str(failed.value))
    assert verdicts == {
        "cpu image (linux/amd64)": "PASS",
        "cpu image (linux/arm64)": "FAIL",
        "gpu image (linux/amd64)": "PASS",
    }
