"""Build inference requests and read responses (JSON or binary extension) byte by byte, as a
client does, so tests see exactly what the server sent: which outputs, in which order, how."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import orjson

from service.tensors import NUMPY_DTYPES

HEADER = "Inference-Header-Content-Length"


def encode_bytes(array: np.ndarray) -> bytes:
    """BYTES elements in the binary extension's layout: each a 4-byte length, then UTF-8."""
    parts = [str(item).encode() for item in array.reshape(-1)]
    return b"".join(struct.pack("<I", len(part)) + part for part in parts)


def request_body(
    inputs: dict[str, tuple[str, np.ndarray]],
    binary_inputs: set[str],
    outputs: list[dict[str, object]] | None = None,
    parameters: dict[str, object] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A request of ``inputs`` (name -> (datatype, array)), those in ``binary_inputs`` as
    binary data, the rest as JSON; ``outputs`` and request ``parameters`` as given."""
    entries: list[dict[str, object]] = []
    tail: list[bytes] = []
    for name, (datatype, array) in inputs.items():
        entry: dict[str, object] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary_inputs:
            raw = encode_bytes(array) if datatype == "BYTES" else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    document: dict[str, object] = {"inputs": entries}
    if outputs is not None:
        document["outputs"] = outputs
    if parameters is not None:
        document["parameters"] = parameters
    header = orjson.dumps(document)
    if not tail:
        return header, {}
    return header + b"".join(tail), {HEADER: str(len(header))}


def decode_response(response: httpx.Response) -> list[tuple[str, np.ndarray, bool]]:
    """(name, array, sent as binary) for each output, in the response's order."""
    assert response.status_code == 200, response.text
    length = int(response.headers.get(HEADER.lower(), len(response.content)))
    header = orjson.loads(response.content[:length])
    tail = memoryview(response.content)[length:]
    decoded: list[tuple[str, np.ndarray, bool]] = []
    for output in header["outputs"]:
        datatype, shape = output["datatype"], output["shape"]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            assert "data" in output, output
            data = output["data"]
            array = np.array(data, dtype=object if datatype == "BYTES" else NUMPY_DTYPES[datatype])
            decoded.append((output["name"], array.reshape(shape), False))
            continue
        assert "data" not in output, output
        raw, tail = tail[:size], tail[size:]
        if datatype == "BYTES":
            array = np.array(_split_bytes(raw), dtype=object)
        else:
            array = np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype])
        decoded.append((output["name"], array.reshape(shape), True))
    assert not tail, f"{len(tail)} bytes of binary data that no output claims"
    return decoded


def _split_bytes(raw: memoryview) -> list[str]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(str(raw[offset + 4 : offset + 4 + length], "utf-8"))
        offset += 4 + length
    return items
