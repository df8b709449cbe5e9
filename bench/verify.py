"""Before timing a contender, check that it answers correctly: same labels as in-process ORT."""

from __future__ import annotations

import urllib.error
import urllib.request

from bench import processes
from bench.formats import Request, RequestFormat
from bench.workload import BenchError

TIMEOUT_S = 30.0


def send_once(port: int, request: Request) -> tuple[bytes, dict[str, str]]:
    """POST the exact request wrk will replay; return the body and lower-cased headers."""
    http_request = urllib.request.Request(
        f"http://{processes.LOOPBACK}:{port}{request.path}",
        data=request.body,
        headers=dict(request.headers),
        method=request.method,
    )
    try:
        with urllib.request.urlopen(http_request, timeout=TIMEOUT_S) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.read(), headers
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        raise BenchError(f"HTTP {error.code} from {request.path}: {detail}") from error


def check_labels(
    contender: str, port: int, request: Request, form: RequestFormat, expected: list[int]
) -> None:
    body, headers = send_once(port, request)
    try:
        labels = form.labels(body, headers)
    except (KeyError, ValueError, TypeError, BenchError) as error:
        raise BenchError(f"{contender}: unreadable response ({error}): {body[:200]!r}") from error
    if labels != expected:
        raise BenchError(
            f"{contender}: labels differ from in-process ORT "
            f"(first 8: got {labels[:8]}, expected {expected[:8]}; "
            f"{len(labels)} vs {len(expected)} rows)"
        )
