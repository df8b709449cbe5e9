"""Request formats: how one batch of rows is sent to a server and how its answer is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bench import workload
from bench.workload import ModelSpec

HEADER_LENGTH = "Inference-Header-Content-Length"
OIP_INFER_PATH = f"/v2/models/{workload.MODEL_NAME}/infer"
PLAIN_PREDICT_PATH = "/predict"


@dataclass(frozen=True)
class Request:
    """One fully built HTTP request: wrk replays it unchanged, the checker sends it once."""

    path: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass(frozen=True)
class RequestFormat:
    name: str
    build: Callable[[ModelSpec, npt.NDArray[np.float32]], Request]
    # (response body, response headers with lower-case names) -> labels
    labels: Callable[[bytes, Mapping[str, str]], list[int]]


def _oip_json(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> Request:
    body = workload.oip_json_body(spec, rows)
    return Request(OIP_INFER_PATH, body, {"Content-Type": "application/json"})


def _oip_binary(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> Request:
    body, header_length = workload.oip_binary_body(spec, rows)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header_length)}
    return Request(OIP_INFER_PATH, body, headers)


def _plain_json(spec: ModelSpec, rows: npt.NDArray[np.float32]) -> Request:
    return Request(
        PLAIN_PREDICT_PATH, workload.plain_json_body(rows), {"Content-Type": "application/json"}
    )


def _binary_labels(body: bytes, headers: Mapping[str, str]) -> list[int]:
    length = headers.get(HEADER_LENGTH.lower())
    return workload.labels_from_oip_binary(body, int(length) if length is not None else None)


OIP_JSON = RequestFormat("json", _oip_json, lambda body, _h: workload.labels_from_oip_json(body))
OIP_BINARY = RequestFormat("binary", _oip_binary, _binary_labels)
PLAIN_JSON = RequestFormat(
    "json", _plain_json, lambda body, _h: workload.labels_from_plain_json(body)
)
