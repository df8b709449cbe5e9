"""Triton's binary tensor data extension: raw little-endian tensors after a JSON header.

The body's first ``Inference-Header-Content-Length`` bytes are the JSON header; each tensor
sent in binary names its size in the header (parameter ``binary_data_size``), and the tensors
follow the header in the order their entries appear. Fixed-size datatypes are the row-major
element bytes. BYTES elements are each a 4-byte little-endian length followed by that many
bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from service.errors import BadRequest, short_repr
from service.tensors import NUMPY_DTYPES, element_count

HEADER_LENGTH_HEADER = "inference-header-content-length"  # HTTP names: any case
BINARY_DATA_SIZE = "binary_data_size"  # the tensor parameter giving its bytes in the tail
_LENGTH = struct.Struct("<I")


class RequestTail:
    """A request's binary tail, handed out to the inputs that claim it, in their order."""

    def __init__(self, tail: memoryview) -> None:
        self._tail = tail
        self._offset = 0

    def take(self, size: object, datatype: str, shape: list[int], name: str) -> np.ndarray:
        """Input `name`'s array: the next `size` bytes (its binary_data_size) of the tail."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input '{name}': binary_data_size {short_repr(size)} is not a size")
        left = len(self._tail) - self._offset
        if size > left:
            raise BadRequest(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({left} bytes left)"
            )
        array = decode_tensor(self._tail[self._offset : self._offset + size], datatype, shape, name)
        self._offset += size
        return array

    def check_claimed(self) -> None:
        """Refuse bytes that no input claimed (once every input has taken its share)."""
        if self._offset != len(self._tail):
            raise BadRequest(
                f"body has {len(self._tail) - self._offset} bytes of binary data "
                "not claimed by any input"
            )


class ResponseTail:
    """A response's binary tail: the outputs asked for in binary, in their order."""

    def __init__(self) -> None:
        self._tensors: list[bytes] = []

    def add(self, array: np.ndarray, datatype: str) -> dict[str, object]:
        """Append an output's bytes; the parameters its entry in the JSON header gets."""
        raw = encode_tensor(array, datatype)
        self._tensors.append(raw)
        return {BINARY_DATA_SIZE: len(raw)}

    def join(self, header: bytes) -> tuple[bytes, str, dict[str, str]]:
        """The body (the JSON header, then the tensors), its media type, and the header
        naming the JSON header's length (none when every output is JSON)."""
        if not self._tensors:
            return header, "application/json", {}
        body = b"".join([header, *self._tensors])
        return body, "application/octet-stream", {HEADER_LENGTH_HEADER: str(len(header))}


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, RequestTail]:
    """Split a request body into its JSON header and the binary tail."""
    view = memoryview(body)
    if header_length is None:
        return view, RequestTail(view[len(view) :])
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(
            f"Inference-Header-Content-Length {short_repr(header_length)} is not an integer"
        ) from None
    if length < 0 or length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes"
        )
    return view[:length], RequestTail(view[length:])


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
