"""Trivy's vulnerability DB in the Dagger scans: kept in one persistent cache volume,
downloaded afresh once a day (the download step's plan changes with the day, so the engine
re-runs it daily and reuses it within a day) before the scan that reads it; `--offline-scan`
never downloads it, scans with the DB-free scanners only and says so in every report."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any
from unittest import mock

import pytest
from dagger import dag

from onnx_serving import commands, gate, scanning
from onnx_serving.variants import PUBLISHED

from .conftest import make_module
from .plan import Call, FakeEngine, calls, fake_engine, find, only, render

CLEAN = json.dumps({"SchemaVersion": 2, "ArtifactName": "/scan/image.tar", "Results": []})
DOWNLOAD = commands.trivy_db_command(scanning.TRIVY_CACHE)
_REAL_DATE = dt.date


def _answers() -> dict[str, Any]:
    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return CLEAN
        return str(FakeEngine().answer(chain))

    return {"contents": contents}


def _scans(engine: FakeEngine) -> list[list[Call]]:
    return [q for q in engine.queries if find(q, "withMountedFile")]


def _execs(chain: list[Call]) -> list[list[str]]:
    return [c.args["args"] for c in find(chain, "withExec")]


def _download_step(chain: list[Call]) -> str:
    """The plan of the DB download, everything it depends on included: the engine's cache
    key for that step."""
    [at] = [i for i, c in enumerate(chain) if c.name == "withExec" and c.args["args"] == DOWNLOAD]
    return render([[c.type_name, c.name, c.args] for c in chain[: at + 1]])


def _scanners(chain: list[Call]) -> list[str]:
    [scan] = [args for args in _execs(chain) if "--scanners" in args]
    return str(scan[scan.index("--scanners") + 1]).split(",")


def _report_query(day: dt.date, offline: bool = False) -> list[Call]:
    """The query `trivy_report` sends for a gate fixed on `day`."""
    judge = scanning.SeverityGate(frozenset({"HIGH", "CRITICAL"}), False, [], day, offline)
    checker = dag.container().from_("checker")
    image = dag.container().from_("image")
    with fake_engine(_answers()) as engine:
        asyncio.run(scanning.trivy_report(checker, image, judge))
    [query] = engine.queries
    return query


def test_the_db_download_reruns_once_a_day() -> None:
    monday, tuesday = dt.date(2027, 3, 1), dt.date(2027, 3, 2)
    first, again, next_day = (_report_query(d) for d in (monday, monday, tuesday))
    assert _download_step(first) == _download_step(again)  # reused within the day
    assert _download_step(first) != _download_step(next_day)  # downloaded afresh the next


def test_the_scan_reads_the_refreshed_db_from_the_persistent_cache() -> None:
    query = _report_query(dt.date(2027, 3, 1))
    order = [c.name for c in query]
    cache = only(query, "withMountedCache")
    execs = _execs(query)
    assert execs[0] == DOWNLOAD and len(execs) == 2  # the download, then the scan
    assert "vuln" in _scanners(query)
    assert order.index("withMountedCache") < order.index("withExec")  # both see the volume
    assert cache.args["path"] == scanning.TRIVY_CACHE
    assert "--cache-dir" in execs[1] and execs[1][execs[1].index("--cache-dir") + 1] == (
        scanning.TRIVY_CACHE
    )


def _volume(chain: list[Call]) -> Any:
    return calls(only(chain, "withMountedCache").args["cache"])


def test_one_cache_volume_holds_the_db_for_every_day_and_image() -> None:
    volumes = {render(_volume(_report_query(dt.date(2027, 3, d)))) for d in (1, 2, 3)}
    with fake_engine(_answers()) as engine:
        asyncio.run(make_module().scan())
    volumes |= {render(_volume(q)) for q in _scans(engine)}
    assert len(_scans(engine)) == len(PUBLISHED)
    assert len(volumes) == 1


class _Tomorrow(dt.date):
    @classmethod
    def today(cls) -> _Tomorrow:
        day = _REAL_DATE.today() + dt.timedelta(days=1)
        return cls(day.year, day.month, day.day)


def test_the_module_refreshes_for_the_day_it_runs() -> None:
    steps = []
    for clock in (_REAL_DATE, _REAL_DATE, _Tomorrow):
        with mock.patch("datetime.date", clock), fake_engine(_answers()) as engine:
            asyncio.run(make_module().scan(variant="cpu"))
        [scan] = _scans(engine)
        steps.append(_download_step(scan))
    today, later_today, tomorrow = steps
    assert today == later_today
    assert today != tomorrow


@pytest.mark.parametrize("function", ["scan", "scan_published"])
def test_offline_scan_never_downloads_the_db_and_says_so(function: str) -> None:
    with fake_engine(_answers()) as engine:
        arguments = {"repository": "acme/onnx"} if function == "scan_published" else {}
        out = asyncio.run(getattr(make_module(offline_scan=True), function)(**arguments))
    scans = _scans(engine)
    assert len(scans) == len(PUBLISHED)
    for query in scans:
        assert DOWNLOAD not in _execs(query)
        assert sorted(_scanners(query)) == ["license", "misconfig", "secret"]
    assert out.rstrip().endswith(
        "vulnerabilities NOT scanned (--offline-scan): misconfig, secret, license only"
    )


def test_offline_scan_still_fails_at_the_gate() -> None:
    secret = {
        "Target": "/app/settings.py",
        "Secrets": [{"RuleID": "aws-access-key-id", "Severity": "CRITICAL", "Title": "AWS"}],
    }
    report = json.dumps({"SchemaVersion": 2, "Results": [secret]})

    def contents(chain: list[Call]) -> str:
        if chain[-2].args.get("path") == "/scan/report.json":
            return report
        return str(FakeEngine().answer(chain))

    with fake_engine({"contents": contents}), pytest.raises(RuntimeError) as failed:
        asyncio.run(make_module(offline_scan=True).scan(variant="cpu"))
    assert "aws-access-key-id" in str(failed.value)
    assert "vulnerabilities NOT scanned" in str(failed.value)


def test_the_gate_day_is_today() -> None:
    # Ignore entries expire by the day the scan runs: the same day the DB is refreshed for.
    with fake_engine(_answers()):
        judge = asyncio.run(
            scanning.severity_gate(make_module().source, gate.Severity.HIGH, False, False)
        )
    assert judge.today == _REAL_DATE.today()


def test_the_tarball_reports_and_db_belong_to_the_check_user() -> None:
    # Trivy runs as the check container's user: it must read the tarball (the engine writes
    # one root-owned, mode 0600), write its report beside it and update the DB in the volume.
    with fake_engine(_answers()) as engine:
        asyncio.run(make_module().scan(variant="cpu"))
    [scan] = _scans(engine)
    runs_as = [c.args["name"] for c in find(scan, "withUser")][-1]
    assert runs_as != "root"
    for name in ("withDirectory", "withMountedFile", "withMountedCache"):
        mounts = [
            c for c in find(scan, name) if str(c.args["path"]).startswith(("/scan", "/cache"))
        ]
        assert mounts, name
        assert all(c.args.get("owner") == runs_as for c in mounts), name
