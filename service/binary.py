"""Triton's binary tensor data extension: raw little-endian tensors after a JSON header.

Fixed-size datatypes are the row-major element bytes. BYTES elements are each a 4-byte
little-endian length followed by that many bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from service.errors import BadRequest, show
from service.tensors import NUMPY_DTYPES, element_count

HEADER_LENGTH_HEADER = "inference-header-content-length"  # HTTP names: any case
_LENGTH = struct.Struct("<I")


def join_body(header: bytes, tensors: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A response body of the JSON header then the raw tensors, and the header naming the
    header's length (none when every output is JSON)."""
    if not tensors:
        return header, {}
    return b"".join([header, *tensors]), {HEADER_LENGTH_HEADER: str(len(header))}


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """Split a request body into its JSON header and the binary tail."""
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(
            f"Inference-Header-Content-Length {show(header_length)} is not an integer"
        ) from None
    if length < 0 or length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes"
        )
    return view[:length], view[length:]


def decode_tensor(raw: memoryview, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """Turn one input's raw bytes into an array of ``shape``; the sizes must match exactly."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _decode_bytes_elements(raw, count, name).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(
            f"input '{name}': binary_data_size {len(raw)} does not match shape {shape} "
            f"of {datatype} ({expected} bytes)"
        )
    if datatype == "BOOL":
        _check_bool_bytes(np.frombuffer(raw, dtype=np.uint8), name)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _check_bool_bytes(raw: np.ndarray, name: str) -> None:
    """numpy would read any nonzero byte as true yet pass the byte on: only 0 and 1 are valid."""
    bad = raw[raw > 1]
    if bad.size:
        raise BadRequest(
            f"input '{name}': BOOL binary data holds byte {int(bad[0])}; only 0 and 1 are valid"
        )


def _decode_bytes_elements(raw: memoryview, count: int, name: str) -> np.ndarray:
    elements: list[str] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"input '{name}': BYTES element length prefix is truncated")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(
                f"input '{name}': BYTES element of {length} bytes runs past binary_data_size"
            )
        try:
            elements.append(str(raw[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"input '{name}': BYTES element is not valid UTF-8") from None
        offset += length
        if len(elements) > count:
            break
    if len(elements) != count:
        raise BadRequest(
            f"input '{name}': binary data holds {len(elements)} BYTES elements, shape needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def encode_tensor(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of an output tensor in the extension's layout."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for element in array.reshape(-1):
            data = element if isinstance(element, bytes) else str(element).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()
