"""The `request_id` column: the request's `id`, else a generated one (docs/SERVER.md).

An empty `"id": ""` is echoed in the response as given (test_protocol_client.py), but as a
row's key for finding a request it is no id at all: the row gets a generated one, 128 random
bits as 32 hex digits, as for a request without `id`. Any other id, even blank or "0", is
kept as sent. Real `python -m service` and PostgreSQL 15.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.service.live_server import running_server
from tests.service.postgres import PostgresCluster
from tests.service.test_inference_log import INFER, cluster, json_body, wait_until, written

__all__ = ["cluster"]  # the module-scoped PostgreSQL fixture, shared with the log's tests

GENERATED = re.compile("[0-9a-f]{32}")


def test_an_empty_request_id_is_echoed_and_its_row_gets_a_generated_one(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url(cluster.create_database())
    sent: list[str | None] = ["", "kept", "", " ", "0", None]
    with running_server({"PREDICTION_LOG_URL": url}, tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            answers = [client.post(INFER, json=json_body(request_id)) for request_id in sent]
        assert [answer.status_code for answer in answers] == [200] * len(sent)
        assert [answer.json().get("id") for answer in answers] == sent
        wait_until(server, "every row written", lambda: written(server) == len(sent))
    rows = cluster.query(url, "SELECT request_id FROM inference_log ORDER BY seq")
    stored = [row["request_id"] for row in rows]
    assert [stored[1], stored[3], stored[4]] == ["kept", " ", "0"]
    generated = [stored[0], stored[2], stored[5]]
    assert all(GENERATED.fullmatch(request_id) for request_id in generated), stored
    assert len(set(generated)) == 3
