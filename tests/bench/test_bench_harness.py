"""The benchmark harness measures only contenders that answer correctly.

These tests assert correctness (labels agree with in-process ONNX Runtime, the label check
really rejects a wrong answer, the report and chart are written), never speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import formats, processes, runner, servers, verify, workload
from bench.workload import BenchError
from tests.models_for_tests import mlp_model

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("taskset") is None,
    reason="the benchmark needs wrk and taskset (apt-get install wrk util-linux)",
)


def test_quick_run_checks_every_answer_and_writes_the_report(tmp_path: Path) -> None:
    """Ours (JSON and binary; defaults and batching off; under uvicorn and granian; one and two
    processes; another checkout's, --baseline) and the naive app, 1 s cells: labels match
    ORT, no errors."""
    contenders = "ours,ours-nobatch,ours-granian,ours-2workers,naive-fastapi"
    baseline = tmp_path / "baseline"
    shutil.copytree(workload.REPO_ROOT / "service", baseline / "service")
    command = [sys.executable, "-m", "bench", "--quick", "--servers", contenders]
    command += ["--baseline", str(baseline)]
    command += ["--batch", "1,32", "--concurrency", "2", "--out", str(tmp_path)]
    command += ["--model", str(mlp_model())]
    completed = subprocess.run(
        command, cwd=workload.REPO_ROOT, capture_output=True, text=True, timeout=240
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["failed"] == {}
    measured = {(c["contender"], c["batch"]) for c in results["cells"]}
    expected = {"in-process ORT", "ours (defaults) json", "ours (defaults) binary"}
    expected |= {"ours (batching off) json", "ours (batching off) binary", "naive-fastapi json"}
    expected |= {"ours-granian json", "ours-granian binary", "ours-2workers json"}
    expected |= {"ours (baseline) json", "ours (baseline) binary"}
    # The merged-batch limit: in-process ORT at 2 rows (batch 1) and 64 rows (batch 32).
    expected |= {"in-process ORT, merged batch"}
    assert measured == {(name, batch) for name in expected for batch in (1, 32)}
    assert all(c["errors"] == 0 and c["requests"] > 0 for c in results["cells"])
    report = (tmp_path / "latest.md").read_text()
    assert "## Targets" in report and "| ours (defaults) binary | 2 |" in report
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")


def test_the_baseline_is_the_other_checkout(tmp_path: Path) -> None:
    """--baseline runs the service/ found there, not this repository's: one that cannot start
    fails its contender, while ours is measured."""
    broken = tmp_path / "baseline" / "service"
    shutil.copytree(workload.REPO_ROOT / "service", broken)
    (broken / "__main__.py").write_text('raise SystemExit("the baseline checkout ran")\n')
    command = [sys.executable, "-m", "bench", "--quick", "--servers", "ours", "--batch", "1"]
    command += ["--baseline", str(broken.parent), "--out", str(tmp_path / "out")]
    completed = subprocess.run(
        command, cwd=workload.REPO_ROOT, capture_output=True, text=True, timeout=240
    )
    assert completed.returncode == 1, completed.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert set(results["failed"]) == {"ours-baseline"}
    log = (tmp_path / "out" / "raw" / "logs" / "ours-baseline.log").read_text()
    assert "the baseline checkout ran" in log
    assert {c["contender"] for c in results["cells"]} >= {"ours (defaults) json"}


def test_label_check_rejects_a_server_that_answers_something_else(tmp_path: Path) -> None:
    """The do-nothing responder answers 200 `{}`: the check must refuse to time it."""
    spec = workload.read_model_spec(mlp_model())
    rows = workload.make_rows(spec, 4)
    request = formats.OIP_JSON.build(spec, rows)
    port = processes.free_port()
    launch = servers.TRIVIAL.launch(tmp_path, tmp_path, port)
    ready = f"http://{processes.LOOPBACK}:{port}{servers.TRIVIAL.ready_path}"
    expected = workload.reference_labels(spec, rows)
    with (
        processes.running_server("trivial", launch.command, launch.env, ready, tmp_path / "log"),
        pytest.raises(BenchError, match=r"^trivial: unreadable response \(no 'label' output"),
    ):
        verify.check_labels("trivial", port, request, formats.OIP_JSON, expected)


def test_binary_body_round_trips_through_the_response_decoder() -> None:
    """The binary request layout: JSON header of the announced length, then raw FP32 rows."""
    spec = workload.read_model_spec(mlp_model())
    rows = workload.make_rows(spec, 3)
    body, header_length = workload.oip_binary_body(spec, rows)
    header = json.loads(body[:header_length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == rows.nbytes
    assert body[header_length:] == rows.astype("<f4").tobytes()


def test_label_check_rejects_labels_that_differ_from_onnx_runtime(tmp_path: Path) -> None:
    """A real server's correct answer fails against labels that are off by one."""
    spec = workload.read_model_spec(mlp_model())
    rows = workload.make_rows(spec, 8)
    request = formats.PLAIN_JSON.build(spec, rows)
    repository = runner.model_repository(spec, tmp_path)
    port = processes.free_port()
    launch = servers.NAIVE.launch(repository, tmp_path, port)
    ready = f"http://{processes.LOOPBACK}:{port}{servers.NAIVE.ready_path}"
    right = workload.reference_labels(spec, rows)
    wrong = [(label + 1) % 10 for label in right]
    with processes.running_server("naive", launch.command, launch.env, ready, tmp_path / "log"):
        verify.check_labels("naive", port, request, formats.PLAIN_JSON, right)
        with pytest.raises(BenchError, match=r"^naive: labels differ from in-process ORT"):
            verify.check_labels("naive", port, request, formats.PLAIN_JSON, wrong)


def test_the_http_floor_serves_the_infer_request_on_both_stacks() -> None:
    """bench.http_floor: both servers answered every request (wrk saw no error), and each
    row has its CPU per request."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.http_floor", "--concurrency", "2", "--duration", "1"],
        cwd=workload.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| raw asyncio responder",
        "| uvicorn + service/http.py",
    ]
    for row in rows:
        requests_per_s, cpu_us = (
            float(cell.replace(",", "")) for cell in row.strip(" |").split(" | ")[-2:]
        )
        assert requests_per_s > 0 and cpu_us > 0, row
