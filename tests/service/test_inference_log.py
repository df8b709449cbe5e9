"""The inference log against a real PostgreSQL 15 on 127.0.0.1 (Debian's `postgresql`;
the tests that need one skip, naming the package, where it is not installed).

Real `python -m service` processes write to throwaway clusters; the tests read the table back,
and break the database (stopped at startup, killed mid-load, never there, wrong password) to
show that every request still gets its normal answer, that rows which cannot be kept are
counted, and that logging resumes. Waits poll /metrics with a deadline; nothing is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg
import httpx
import numpy as np
import pytest

from service.inference_log import (
    COLUMNS,
    SCHEMA_VERSION,
    InferenceLog,
    LogConfigError,
    LogEntry,
    check_url,
    describe_target,
    migrate,
    redact,
    split_password,
    write_rows,
)
from service.metrics import DROP_REASONS, ServerMetrics
from service.protocol import RequestedOutput
from service.settings import SettingsError, load_settings
from service.tensors import TensorSpec
from tests.service.live_server import LiveServer, running_server, spawn, wait_ready
from tests.service.postgres import PostgresCluster, free_port, postgres_problem

REPO = Path(__file__).resolve().parents[2]
INFER = "/v2/models/mlp/infer"
DEADLINE_S = 90.0  # reconnect backoff tops out at 30 s
ROWS = np.arange(2 * 256, dtype=np.float32).reshape(2, 256) / 512


def new_cluster() -> PostgresCluster:
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(problem)
    return PostgresCluster.create()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """One cluster for the tests that do not break it (skips without PostgreSQL)."""
    started = new_cluster()
    yield started
    started.destroy()


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop, kill and restart (skips without PostgreSQL)."""
    started = new_cluster()
    yield started
    started.destroy()


def json_body(request_id: str | None = None, rows: np.ndarray = ROWS) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def binary_body(request_id: str, rows: np.ndarray = ROWS) -> tuple[bytes, dict[str, str]]:
    raw = rows.astype("<f4").tobytes()
    header = {
        "id": request_id,
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def expected_digest(rows: np.ndarray) -> bytes:
    """The documented input_sha256: per input `name datatype shape` and its raw bytes."""
    shape = ",".join(map(str, rows.shape))
    return hashlib.sha256(f"input FP32 {shape}\n".encode() + rows.astype("<f4").tobytes()).digest()


def wait_until(server: LiveServer, what: str, check: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        if server.process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"never: {what}; server log:\n{server.log()}")


def written(server: LiveServer) -> float:
    return server.metric("prediction_log_written_total")


def dropped(server: LiveServer, reason: str) -> float:
    return server.metric("prediction_log_dropped_total", f'reason="{reason}"')


def all_dropped(server: LiveServer) -> float:
    return sum(dropped(server, reason) for reason in DROP_REASONS)


def infer_many(server: LiveServer, count: int, prefix: str) -> list[int]:
    with httpx.Client(base_url=server.base, timeout=60) as client:
        return [
            client.post(INFER, json=json_body(f"{prefix}-{n}")).status_code for n in range(count)
        ]


def error_lines(server: LiveServer, needle: str) -> list[str]:
    return [line for line in server.log().splitlines() if " ERROR " in line and needle in line]


# ---- rows ---------------------------------------------------------------------------------


def test_each_request_is_one_row_with_its_fields(cluster: PostgresCluster, tmp_path: Path) -> None:
    url = cluster.url(cluster.create_database())
    before = time.time()
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        sent: dict[str, tuple[int, bytes, bytes]] = {}  # id -> status, request, response
        with httpx.Client(base_url=server.base, timeout=60) as client:
            answer = client.post(INFER, json=json_body("as-json"))
            sent["as-json"] = (answer.status_code, answer.request.content, answer.content)
            body, headers = binary_body("as-binary")
            answer = client.post(INFER, content=body, headers=headers)
            sent["as-binary"] = (answer.status_code, body, answer.content)
            answer = client.post(INFER, json=json_body(None, ROWS[:1]))
            sent["no-id"] = (answer.status_code, answer.request.content, answer.content)
            unknown = client.post("/v2/models/nope/infer", json=json_body("x"))
            old = client.post("/v2/models/mlp/versions/7/infer", json=json_body("y"))
            bad = client.post(INFER, content=b"{not json")
        assert [status for status, _, _ in sent.values()] == [200, 200, 200]
        assert (unknown.status_code, old.status_code, bad.status_code) == (404, 404, 400)
        wait_until(server, "6 rows written", lambda: written(server) == 6)
        assert server.metric("prediction_log_queued") == 0
        assert server.metric("prediction_log_connected") == 1
    after = time.time()

    rows = cluster.query(url, "SELECT * FROM inference_log ORDER BY seq")
    assert len(rows) == 6
    assert {row["server_id"] for row in rows} == {rows[0]["server_id"]}
    assert [row["seq"] for row in rows] == list(range(6))
    for row in rows:
        assert before <= row["started_at"].timestamp() <= after
        assert row["latency_ms"] > 0
        assert row["payload"] is None  # PREDICTION_LOG_PAYLOADS is off by default
    ok_json, ok_binary, no_id, *errors = rows
    for row, key in ((ok_json, "as-json"), (ok_binary, "as-binary")):
        _, request_body, response_body = sent[key]
        assert row["request_id"] == key
        assert (row["model"], row["model_version"], row["status"]) == ("mlp", "1", 200)
        assert row["error"] is None and row["batch_rows"] == 2
        assert row["input_bytes"] == len(request_body)
        assert row["output_bytes"] == len(response_body)
        # The same tensors hash the same whether they came as JSON or binary.
        assert row["input_sha256"] == expected_digest(ROWS)
    assert re.fullmatch("[0-9a-f]{32}", no_id["request_id"])  # generated: the request had none
    assert no_id["batch_rows"] == 1 and no_id["input_sha256"] == expected_digest(ROWS[:1])
    unknown_row, old_row, bad_row = errors
    assert (unknown_row["model"], unknown_row["model_version"]) == ("nope", None)
    assert (unknown_row["status"], unknown_row["error"]) == (404, unknown.json()["error"])
    assert (old_row["model"], old_row["model_version"], old_row["status"]) == ("mlp", "7", 404)
    assert old_row["error"] == old.json()["error"]
    assert (bad_row["status"], bad_row["error"]) == (400, bad.json()["error"])
    assert bad_row["input_bytes"] == len(b"{not json") and bad_row["input_sha256"] is None
    assert len({row["request_id"] for row in rows}) == 6


def test_concurrent_requests_are_logged_exactly_once(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database())
    env = {"PREDICTION_LOG_URL": url, "MAX_BATCH_SIZE": "16"}  # merged runs, one row each
    with running_server(env, tmp_path / "server.log") as server:
        ids = [f"load-{n}" for n in range(400)]

        def send(chunk: list[str]) -> list[int]:
            with httpx.Client(base_url=server.base, timeout=60) as client:
                return [client.post(INFER, json=json_body(i)).status_code for i in chunk]

        with ThreadPoolExecutor(16) as pool:
            statuses = [s for done in pool.map(send, [ids[n::16] for n in range(16)]) for s in done]
        assert statuses == [200] * len(ids)
        wait_until(server, "every row written", lambda: written(server) == len(ids))
    rows = cluster.query(url, "SELECT request_id FROM inference_log")
    assert sorted(row["request_id"] for row in rows) == sorted(ids)


def test_payloads_only_when_asked_and_the_password_from_a_file(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = cluster.create_database()
    secret = tmp_path / "password"
    secret.write_text(cluster.password + "\n")
    env = {
        "PREDICTION_LOG_URL": f"postgresql://postgres@127.0.0.1:{cluster.port}/{database}",
        "PREDICTION_LOG_PASSWORD_FILE": str(secret),
        "PREDICTION_LOG_PAYLOADS": "1",
    }
    with running_server(env, tmp_path / "server.log") as server:
        answer = httpx.post(f"{server.base}{INFER}", json=json_body("kept"), timeout=60)
        assert answer.status_code == 200
        wait_until(server, "the row written", lambda: written(server) == 1)
    [row] = cluster.query(cluster.url(database), "SELECT payload FROM inference_log")
    payload = json.loads(row["payload"])
    [tensor] = payload["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("input", "FP32", [2, 256])
    assert np.array_equal(np.array(tensor["data"], dtype=np.float32), ROWS.reshape(-1))
    returned = {out["name"]: out for out in answer.json()["outputs"]}
    assert {out["name"] for out in payload["outputs"]} == set(returned)
    for out in payload["outputs"]:
        assert out["shape"] == returned[out["name"]]["shape"]
        assert np.allclose(out["data"], returned[out["name"]]["data"])


def test_every_datatype_is_kept_and_odd_text_spoils_no_batch(
    cluster: PostgresCluster, model_repository: Path, tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in text and jsonb: client-chosen ids and BYTES elements holding
    one are stored with U+FFFD instead, so the rows around them are written too."""
    url = cluster.url(cluster.create_database())
    values: dict[str, list[Any]] = {
        "BOOL": [True, False],
        "FP16": [0.5, -1.5],
        "FP32": [0.25, 2.0],
        "FP64": [1e-3, 3.5],
        "BYTES": ["a\u0000b", "ünï"],
        "UINT64": [2**64 - 1, 0],
        **{t: [1, -2] for t in ("INT8", "INT16", "INT32", "INT64")},
        **{t: [1, 2] for t in ("UINT8", "UINT16", "UINT32")},
    }
    body = {
        "id": "odd\u0000id",
        "inputs": [
            {"name": f"in_{t}", "datatype": t, "shape": [1, 2], "data": data}
            for t, data in values.items()
        ],
    }
    env = {
        "MODEL_REPOSITORY": str(model_repository),
        "PREDICTION_LOG_URL": url,
        "PREDICTION_LOG_PAYLOADS": "1",
    }
    with running_server(env, tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            odd = client.post("/v2/models/identity/infer", json=body)
            plain = client.post(INFER, json=json_body("plain"))
        assert (odd.status_code, plain.status_code) == (200, 200), odd.text
        wait_until(server, "both rows written", lambda: written(server) == 2)
    rows = cluster.query(url, "SELECT request_id, payload FROM inference_log ORDER BY seq")
    assert [row["request_id"] for row in rows] == ["odd\ufffdid", "plain"]
    payload = json.loads(rows[0]["payload"])
    stored = {tensor["name"]: tensor["data"] for tensor in payload["inputs"]}
    expected = {f"in_{t}": data for t, data in values.items()}
    expected["in_BYTES"] = ["a\ufffdb", "ünï"]
    assert stored == expected
    assert {tensor["name"] for tensor in payload["outputs"]} == {f"out_{t}" for t in values}


def test_two_servers_migrate_one_database_once(cluster: PostgresCluster, tmp_path: Path) -> None:
    """Started together on an empty database: the schema is created once, both write."""
    url = cluster.url(cluster.create_database())
    env = {"PREDICTION_LOG_URL": url}
    servers = []
    for n in range(2):
        process, port = spawn(env, tmp_path / f"server-{n}.log")
        servers.append(LiveServer(process, port, tmp_path / f"server-{n}.log"))
    try:
        for server in servers:
            wait_ready(server)
            assert infer_many(server, 5, f"s{server.port}") == [200] * 5
        for server in servers:
            wait_until(server, "5 rows written", lambda s=server: written(s) == 5)
    finally:
        for server in servers:
            server.stop()
    # A restart finds the schema in place.
    with running_server(env, tmp_path / "again.log") as server:
        assert infer_many(server, 1, "again") == [200]
        wait_until(server, "the row written", lambda: written(server) == 1)
    versions = cluster.query(url, "SELECT version FROM inference_log_schema")
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    counts = cluster.query(url, "SELECT server_id, count(*) FROM inference_log GROUP BY 1")
    assert sorted(row["count"] for row in counts) == [1, 5, 5]


def test_a_role_that_may_only_insert_logs_into_existing_tables(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """The first start creates the tables (here: as the owner); after that a role with
    INSERT and SELECT on them, and no CREATE anywhere, is enough. A role that may do neither
    gets one line naming the table, and serving goes on; one that may not insert has its rows
    dropped as write errors."""
    database = cluster.create_database()
    owner = cluster.url(database)

    async def create_tables() -> None:
        connection = await asyncpg.connect(owner)
        try:
            await migrate(connection)
        finally:
            await connection.close()

    asyncio.run(create_tables())
    cluster.execute(
        owner,
        "CREATE ROLE writer LOGIN PASSWORD 'writer-pw'; CREATE ROLE nobody LOGIN PASSWORD 'n-pw';"
        "GRANT SELECT, INSERT ON inference_log, inference_log_schema TO writer;",
    )
    base = f"127.0.0.1:{cluster.port}/{database}"
    with running_server(
        {"PREDICTION_LOG_URL": f"postgresql://writer:writer-pw@{base}"}, tmp_path / "writer.log"
    ) as server:
        assert infer_many(server, 3, "w") == [200] * 3
        wait_until(server, "3 rows written", lambda: written(server) == 3)
    with running_server(
        {"PREDICTION_LOG_URL": f"postgresql://nobody:n-pw@{base}"}, tmp_path / "nobody.log"
    ) as server:
        wait_until(server, "the refusal logged", lambda: error_lines(server, "permission"))
        assert infer_many(server, 2, "n") == [200] * 2
    [line] = error_lines(server, "inference log")
    assert "cannot create or migrate inference_log" in line, line
    # A role that may read but not insert: each batch is refused, retried, then dropped.
    cluster.execute(
        owner,
        "CREATE ROLE reader LOGIN PASSWORD 'r-pw';"
        "GRANT SELECT ON inference_log, inference_log_schema TO reader;",
    )
    with running_server(
        {"PREDICTION_LOG_URL": f"postgresql://reader:r-pw@{base}"}, tmp_path / "reader.log"
    ) as server:
        assert infer_many(server, 2, "r") == [200] * 2
        wait_until(server, "the refused rows dropped", lambda: dropped(server, "write_error") == 2)
    assert error_lines(server, "rows dropped (write_error)"), server.log()
    assert "writer failed" not in server.log()
    assert len(cluster.query(owner, "SELECT 1 FROM inference_log")) == 3


def test_the_documented_query_gives_latency_and_error_rate_per_version(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database())
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        assert infer_many(server, 8, "ok") == [200] * 8
        bad = httpx.post(f"{server.base}{INFER}", content=b"[]", timeout=60)
        assert bad.status_code == 400
        wait_until(server, "9 rows written", lambda: written(server) == 9)
        # Named for whoever looks at pg_stat_activity.
        named = (
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'onnx-serving inference log'"
        )
        assert cluster.query(url, named)
    assert "inference log: stopped; 9 rows written\n" in server.log()  # over several batches
    server_docs = (REPO / "docs" / "SERVER.md").read_text()
    match = re.search(r"```sql\n(.*?)```", server_docs, re.DOTALL)
    assert match, "docs/SERVER.md has no ```sql block"
    [row] = cluster.query(url, match.group(1))
    assert (row["model"], row["model_version"], row["requests"]) == ("mlp", "1", 9)
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["error_rate"] == pytest.approx(1 / 9)


# ---- faults -------------------------------------------------------------------------------


def test_database_down_at_startup_then_up(own_cluster: PostgresCluster, tmp_path: Path) -> None:
    url = own_cluster.url(own_cluster.create_database())
    own_cluster.stop()
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        assert infer_many(server, 20, "early") == [200] * 20
        assert server.metric("prediction_log_connected") == 0
        assert server.metric("prediction_log_queued") == 20  # kept, not lost
        assert error_lines(server, "cannot connect")
        own_cluster.start()
        wait_until(server, "the queued rows written", lambda: written(server) == 20)
        assert all_dropped(server) == 0
    assert len(own_cluster.query(url, "SELECT 1 FROM inference_log")) == 20


def test_slow_database_delays_only_the_log(cluster: PostgresCluster, tmp_path: Path) -> None:
    """A lock holds every write to the table: requests answer as usual, rows wait in memory,
    and all of them are written, once each, when the lock goes."""
    url = cluster.url(cluster.create_database())
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        async def hold() -> None:
            connection = await asyncpg.connect(url)
            try:
                async with connection.transaction():
                    await connection.execute("LOCK TABLE inference_log IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.05)
            finally:
                await connection.close()

        asyncio.run(hold())

    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        wait_until(server, "connected", lambda: server.metric("prediction_log_connected") == 1)
        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(timeout=60)
            assert infer_many(server, 30, "slow") == [200] * 30
            assert server.metric("prediction_log_queued") == 30
            assert written(server) == 0
        finally:
            release.set()
            holder.join(timeout=60)
        wait_until(server, "every row written", lambda: written(server) == 30)
        assert all_dropped(server) == 0
    rows = cluster.query(url, "SELECT request_id FROM inference_log")
    assert sorted(row["request_id"] for row in rows) == sorted(f"slow-{n}" for n in range(30))


def test_database_killed_mid_load_and_restarted(
    own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Load runs throughout; PostgreSQL crashes and comes back. Every answer is 200, the
    rows that did not fit in the queue are counted, and every other row is in the table
    exactly once: sent = written + dropped."""
    url = own_cluster.url(own_cluster.create_database())
    env = {"PREDICTION_LOG_URL": url, "PREDICTION_LOG_QUEUE_SIZE": "50"}
    with running_server(env, tmp_path / "server.log") as server:
        statuses: list[int] = []
        sent: list[str] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            with httpx.Client(base_url=server.base, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    request_id = f"w{worker}-{n}"
                    sent.append(request_id)
                    statuses.append(client.post(INFER, json=json_body(request_id)).status_code)
                    n += 1

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(server, "rows written", lambda: written(server) >= 20)
            own_cluster.kill()
            wait_until(server, "drops counted", lambda: dropped(server, "queue_full") > 0)
            assert server.metric("prediction_log_queued") <= 50  # memory stays bounded
            own_cluster.start()
            resumed_from = written(server)
            wait_until(server, "logging resumed", lambda: written(server) > resumed_from + 50)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        assert statuses and set(statuses) == {200}
        wait_until(server, "the queue drained", lambda: server.metric("prediction_log_queued") == 0)
        assert written(server) + all_dropped(server) == len(sent)
        rows = own_cluster.query(url, "SELECT request_id FROM inference_log")
        ids = [row["request_id"] for row in rows]
        assert len(ids) == written(server) and len(set(ids)) == len(ids)
        assert set(ids) <= set(sent)


def test_full_queue_drops_and_counts_and_shutdown_is_bounded(tmp_path: Path) -> None:
    """Nothing listens at the URL: the queue holds QUEUE_SIZE rows, the rest are counted as
    dropped, and SIGTERM gives up after the flush timeout, counting what was left."""
    env = {
        "PREDICTION_LOG_URL": f"postgresql://postgres:pw@127.0.0.1:{free_port()}/none",
        "PREDICTION_LOG_QUEUE_SIZE": "10",
        "PREDICTION_LOG_FLUSH_TIMEOUT_S": "0.5",
    }
    with running_server(env, tmp_path / "server.log") as server:
        assert infer_many(server, 40, "q") == [200] * 40
        assert dropped(server, "queue_full") == 30
        assert server.metric("prediction_log_queued") == 10
        assert len(error_lines(server, "queue full")) == 1
        assert server.stop() == 0
    assert "dropped {'queue_full': 30, 'shutdown': 10}" in server.log()


def test_sigterm_flushes_what_is_queued(own_cluster: PostgresCluster, tmp_path: Path) -> None:
    url = own_cluster.url(own_cluster.create_database())
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        wait_until(server, "connected", lambda: server.metric("prediction_log_connected") == 1)
        own_cluster.stop()
        assert infer_many(server, 25, "late") == [200] * 25
        assert server.metric("prediction_log_queued") == 25
        own_cluster.start()
        assert server.stop() == 0  # at once: the flush reconnects without waiting for backoff
    assert "25 rows written" in server.log()
    assert len(own_cluster.query(url, "SELECT 1 FROM inference_log")) == 25


# ---- bad configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("postgresql://postgres:s3cret-value@127.0.0.1:notaport/x", "PREDICTION_LOG_URL="),
        ("mysql://postgres:s3cret-value@127.0.0.1/x", "PREDICTION_LOG_URL="),
        ("postgresql://postgres:s3cret-value@127.0.0.1:5/x?sslmode=sometimes", "sslmode"),
    ],
)
def test_malformed_url_is_one_line_and_serving_goes_on(url: str, line: str, tmp_path: Path) -> None:
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        assert infer_many(server, 3, "m") == [200, 200, 200]
        wait_until(server, "drops counted", lambda: dropped(server, "misconfigured") == 3)
    assert len(error_lines(server, line)) == 1, server.log()
    assert len(error_lines(server, "inference log")) == 1, server.log()
    assert "s3cret-value" not in server.log()


# Unencoded URL delimiters in a password; every piece of it is marked, none may be logged.
ODD_PASSWORDS = ["SECRETa#SECRETb/SECRETc?SECRETd", "SECRETe@SECRETf%zzSECRETg:SECRETh/"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_no_form_of_a_password_reaches_a_log_line(password: str, tmp_path: Path) -> None:
    url = f"postgresql://writer:{password}@127.0.0.1:{free_port()}/log"
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        assert infer_many(server, 2, "s") == [200, 200]
        wait_until(server, "a connection error", lambda: error_lines(server, "cannot connect"))
    assert "writer@127.0.0.1" in server.log()
    assert "SECRET" not in server.log()


@pytest.mark.parametrize("password", [*ODD_PASSWORDS, "p%40ss", "plain"])
def test_split_password_takes_the_password_whole_out_of_the_url(password: str) -> None:
    url, found = split_password(f"postgresql://us%65r:{password}@h:5/d?sslmode=disable")
    assert (url, found) == ("postgresql://user@h:5/d?sslmode=disable", unquote(password))
    assert split_password("postgresql://user@h/d") == ("postgresql://user@h/d", None)


def test_wrong_password_is_one_line_and_serving_goes_on(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database(), password="s3cret-wrong")
    env = {"PREDICTION_LOG_URL": url, "LOG_LEVEL": "debug"}  # retries show as DEBUG lines
    with running_server(env, tmp_path / "server.log") as server:
        assert infer_many(server, 3, "p") == [200, 200, 200]
        wait_until(
            server,
            "the writer retried twice",
            lambda: server.log().count("DEBUG service.inference_log: inference log: cannot") >= 2,
        )
        assert server.metric("prediction_log_connected") == 0
    assert len(error_lines(server, "password authentication failed")) == 1, server.log()
    assert "s3cret-wrong" not in server.log()


def test_unreadable_password_file_is_one_line(tmp_path: Path) -> None:
    env = {
        "PREDICTION_LOG_URL": "postgresql://postgres@127.0.0.1:5432/x",
        "PREDICTION_LOG_PASSWORD_FILE": str(tmp_path / "missing"),
    }
    with running_server(env, tmp_path / "server.log") as server:
        assert infer_many(server, 2, "f") == [200, 200]
        assert dropped(server, "misconfigured") == 2
    reason = f"PREDICTION_LOG_PASSWORD_FILE={str(tmp_path / 'missing')!r} cannot be read: "
    assert len(error_lines(server, reason + "No such file or directory")) == 1, server.log()


# ---- pieces, without a server -------------------------------------------------------------


def test_a_retried_batch_is_not_written_twice(cluster: PostgresCluster) -> None:
    """A write whose acknowledgement was lost may have committed: the retry adds only the
    rows that are not there."""
    url = cluster.url(cluster.create_database())

    def row(seq: int) -> tuple[Any, ...]:
        values: dict[str, Any] = dict.fromkeys(COLUMNS)
        values.update(
            server_id=uuid.UUID(int=7),
            seq=seq,
            started_at=datetime.now(UTC),
            request_id=f"r{seq}",
            model="m",
            status=200,
            latency_ms=1.0,
        )
        return tuple(values[column] for column in COLUMNS)

    async def scenario() -> list[int]:
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection)
            await migrate(connection)  # idempotent
            await write_rows(connection, [row(0), row(1)], retry=False)
            await write_rows(connection, [row(0), row(1), row(2)], retry=True)
            await write_rows(connection, [row(2), row(3)], retry=True)
            return [r["seq"] for r in await connection.fetch("SELECT seq FROM inference_log")]
        finally:
            await connection.close()

    assert sorted(asyncio.run(scenario())) == [0, 1, 2, 3]


def test_log_settings_are_parsed_and_the_url_is_kept_out_of_repr() -> None:
    settings = load_settings(
        {
            "PREDICTION_LOG_URL": "postgresql://u:hunter2@127.0.0.1/db",
            "PREDICTION_LOG_PAYLOADS": "true",
            "PREDICTION_LOG_QUEUE_SIZE": "5",
        }
    )
    assert settings.prediction_log_payloads is True
    assert settings.prediction_log_queue_size == 5
    assert "hunter2" not in repr(settings)
    assert load_settings({}).prediction_log_url is None  # off by default
    with pytest.raises(SettingsError, match="PREDICTION_LOG_PAYLOADS='maybe'"):
        load_settings({"PREDICTION_LOG_PAYLOADS": "maybe"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5/d", "postgresql://u:***@h:5/d"),
        ("postgresql://u:p@ss/w:rd@h/d", "postgresql://u:***@h/d"),
        ("postgres://h/d?password=pw&x=1", "postgres://h/d?password=***&x=1"),
        ("u:pw@h", "u:***@h"),
        ("postgresql://h/d", "postgresql://h/d"),
    ],
)
def test_redact_hides_passwords_even_in_malformed_urls(url: str, shown: str) -> None:
    assert redact(url) == shown


NOT_A_URL = "is not a postgresql://user@host[:port]/database URL"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", NOT_A_URL),
        ("127.0.0.1:5432", NOT_A_URL),
        ("http://u:pw@h/d", NOT_A_URL),
        ("postgresql://u:pw@h:99999/d", "is malformed: Port out of range 0-65535"),
        ("postgresql://u:pw@h /d", "contains whitespace"),
    ],
)
def test_check_url_rejects_what_cannot_be_a_postgresql_url(url: str, reason: str) -> None:
    with pytest.raises(LogConfigError) as error:
        check_url(url)
    assert str(error.value) == f"PREDICTION_LOG_URL={redact(url)!r} {reason}"
    assert "pw" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("postgresql://writer:pw@db.internal:6543/log", "writer@db.internal:6543/log"),
        ("postgresql://caf%C3%A9@h/d", "café@h:5432/d"),
        ("postgresql:///log", "(default user)@(default host):5432/log"),
        ("postgres://h", "(default user)@h:5432/"),
    ],
)
def test_describe_target_names_user_host_port_and_database(url: str, target: str) -> None:
    assert describe_target(url) == target


def test_a_kept_payload_counts_the_bytes_of_its_inputs_and_outputs() -> None:
    # What the queue's payload budget (PAYLOAD_BUDGET_BYTES) charges a row.
    inputs = {"x": np.zeros((2, 4), np.float32)}
    results: dict[str, np.ndarray] = {"y": np.zeros((2, 3), np.float64), "z": np.zeros(2, np.int8)}
    specs = {"x": TensorSpec("x", "FP32", (-1, 4))}
    out_specs = {"y": TensorSpec("y", "FP64", (-1, 3)), "z": TensorSpec("z", "INT8", (-1,))}
    requested = [RequestedOutput("y", binary=False)]
    kept = LogEntry("m", 0.0, payloads=True)
    asyncio.run(kept.add_inputs("id-1", inputs, specs))
    kept.add_outputs(results, requested, out_specs, body_bytes=100)
    assert (kept.payload_bytes, kept.output_bytes, kept.rows) == (32 + 48, 100, 2)
    assert [name for name, _, _ in kept.outputs or []] == ["y"]
    plain = LogEntry("m", 0.0, payloads=False)
    asyncio.run(plain.add_inputs("id-2", inputs, specs))
    plain.add_outputs(results, requested, out_specs, body_bytes=100)
    assert (plain.payload_bytes, plain.inputs, plain.outputs) == (0, None, None)


def test_a_queued_row_holds_client_text_cut_and_bytes_payloads_counted_whole() -> None:
    # Before queuing: an 8 MiB id, a 60 KB model name and its 404 text are cut to TEXT_LIMIT,
    # and BYTES tensors are charged for their text, not only for their object pointers.
    huge = "i" * (8 << 20)
    entry = InferenceLog(None, ServerMetrics(["m"])).entry("n" * 60_000, 0.0)
    spec = {"x": TensorSpec("x", "FP32", (-1,))}
    asyncio.run(entry.add_inputs(huge, {"x": np.zeros(1, np.float32)}, spec))
    entry.finish(None, 404, "unknown model " + "n" * 60_000, 0.1)
    assert max(len(entry.model), len(entry.request_id or ""), len(entry.error or "")) <= 2000
    words = np.array(["w" * 1000] * 8, dtype=object)
    kept = LogEntry("m", 0.0, payloads=True)
    asyncio.run(kept.add_inputs(None, {"s": words}, {"s": TensorSpec("s", "BYTES", (-1,))}))
    assert kept.payload_bytes >= 8 * 1000
