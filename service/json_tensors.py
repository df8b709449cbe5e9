"""Large JSON tensors decoded straight into numpy, without one Python object per number.

orjson turns every number of a ``"data"`` array into a Python object (8 to 40 bytes each on
top of the text), so a 60 MB body of zeros took over 1 GB. For a large request the flat
numeric ``data`` arrays are cut out of the text before orjson sees it, each replaced by a
placeholder string; :func:`decode_numbers` later checks the text against JSON's number
grammar and converts it in bounded chunks with numpy into an array of the input's dtype,
allocated once, after its size was checked against the request's budget. What is left for
orjson is bounded by :func:`check_values` (about 40 bytes per JSON value).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from service.errors import BadRequest, PayloadTooLarge
from service.tensors import NUMPY_DTYPES

FAST_MIN_BYTES = 64 * 1024  # smaller documents go to orjson whole: their values are few
SPAN_MIN_BYTES = 1024  # shorter arrays stay in the document
CHUNK_BYTES = 1 << 20  # text converted per step: bounds temporaries and GIL hold times
VALUE_BYTES = 40  # a number in a list, as orjson builds it (slot + object)
CONTAINER_BYTES = 72  # an empty list or object
_DATA_KEY = re.compile(rb'(?<!\\)"data"\s*:\s*\[')
_NUMBER_BYTES = b"0123456789+-.eE, \t\r\n"
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[list(b"0123456789")] = True
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\r\n")] = True
_EXP = np.zeros(256, dtype=bool)
_EXP[list(b"eE")] = True
_SIGN = np.zeros(256, dtype=bool)
_SIGN[list(b"+-")] = True
_FLOAT_SIGNS = frozenset(b".eE")


def cut_numeric_arrays(text: bytes) -> tuple[bytes, dict[str, memoryview]]:
    """The document with each long flat numeric ``"data": [...]`` array replaced by a
    placeholder string, and the arrays' text (between the brackets) by placeholder."""
    if len(text) < FAST_MIN_BYTES:
        return text, {}
    view = memoryview(text)
    token = os.urandom(8).hex()  # a client cannot name a placeholder it cannot guess
    parts: list[bytes | memoryview] = []
    spans: dict[str, memoryview] = {}
    done = 0
    for match in _DATA_KEY.finditer(text):
        start = match.end()
        if start < done:
            continue
        end = text.find(b"]", start)
        if end < 0 or end - start < SPAN_MIN_BYTES:
            continue
        span = view[start:end]
        if not _only_number_bytes(span):  # nested, strings, true/false: orjson's
            continue
        parts += [view[done : start - 1], b'"\\u0000%s:%d"' % (token.encode(), len(spans))]
        spans[f"\u0000{token}:{len(spans)}"] = span
        done = end + 1
    if not spans:
        return text, {}
    parts.append(view[done:])
    return b"".join(parts), spans


def _only_number_bytes(span: memoryview) -> bool:
    for offset in range(0, len(span), CHUNK_BYTES):
        if bytes(span[offset : offset + CHUNK_BYTES]).translate(None, _NUMBER_BYTES):
            return False
    return True


def check_values(document: bytes, budget: int) -> None:
    """413 before orjson builds more Python objects than the request's memory budget."""
    containers = document.count(b"[") + document.count(b"{")
    estimate = VALUE_BYTES * (document.count(b",") + 1) + CONTAINER_BYTES * containers
    if estimate > budget:
        raise PayloadTooLarge(
            f"JSON request of about {estimate} bytes as Python values exceeds the request "
            f"memory budget of {budget} bytes (2 x MAX_BODY_BYTES); send large tensors as "
            "flat 'data' lists of numbers or with the binary tensor extension"
        )


def decode_numbers(
    span: memoryview, datatype: str, shape: list[int], count: int, name: str
) -> np.ndarray:
    """The text of a flat list of JSON numbers as an array of `shape` (`count` elements)."""
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind not in "iuf":
        raise BadRequest(f"input '{name}': 'data' holds numbers, not valid {datatype} values")
    commas = sum(
        bytes(span[offset : offset + CHUNK_BYTES]).count(b",")
        for offset in range(0, len(span), CHUNK_BYTES)
    )
    if commas + 1 != count:  # counted in the text, before anything is allocated
        raise BadRequest(
            f"input '{name}': shape {shape} needs {count} elements, data has {commas + 1}"
        )
    out = np.empty(count, dtype=dtype)
    position = filled = 0
    while position < len(span):
        end = position + CHUNK_BYTES
        if end < len(span):
            comma = _find_comma(span, end)
            end = comma if comma >= 0 else len(span)
        chunk = bytes(span[position:end])
        values = _parse_chunk(chunk, dtype, datatype, name)
        out[filled : filled + len(values)] = values
        filled += len(values)
        position = end + 1
    return out.reshape(shape)


def _find_comma(span: memoryview, start: int) -> int:
    step = 4096
    while start < len(span):
        found = bytes(span[start : start + step]).find(b",")
        if found >= 0:
            return start + found
        start += step
    return -1


def _parse_chunk(chunk: bytes, dtype: np.dtype[Any], datatype: str, name: str) -> np.ndarray:
    bad = f"input '{name}': 'data' is not a list of valid {datatype} numbers"
    if not _json_number_grammar(np.frombuffer(chunk, dtype=np.uint8)):
        raise BadRequest(bad)
    expected = chunk.count(b",") + 1
    if dtype.kind in "iu" and _FLOAT_SIGNS.intersection(chunk):
        raise BadRequest(f"input '{name}': 'data' holds float values, not valid {datatype} values")
    if dtype.kind == "u" and b"-" in chunk:
        raise BadRequest(f"input '{name}': a negative value is out of range for {datatype}")
    parse = (
        np.dtype(np.uint64 if dtype.kind == "u" else np.int64)
        if dtype.kind in "iu"
        else (dtype if dtype.itemsize >= 4 else np.dtype(np.float64))
    )
    try:
        values = np.fromstring(chunk, dtype=parse, sep=",")
    except ValueError:
        raise BadRequest(bad) from None
    if values.size != expected:
        raise BadRequest(bad)
    if dtype.kind == "f":
        typed = values.astype(dtype) if values.dtype != dtype else values
        if np.isinf(typed).any():  # JSON has no infinity: an overflow
            raise BadRequest(f"input '{name}': a value is out of range for {datatype}")
        return typed
    limits = np.iinfo(parse)
    if (values == limits.max).any() or (dtype.kind == "i" and (values == limits.min).any()):
        # numpy saturates on overflow: check these few exactly, with Python integers.
        exact = [int(token) for token in chunk.split(b",")]
        target = np.iinfo(dtype)
        if any(value < target.min or value > target.max for value in exact):
            raise BadRequest(f"input '{name}': a value is out of range for {datatype}")
    target = np.iinfo(dtype)
    if values.size and (values.min() < target.min or values.max() > target.max):
        raise BadRequest(f"input '{name}': a value is out of range for {datatype}")
    return values.astype(dtype, copy=False)


def _json_number_grammar(text: np.ndarray) -> bool:
    """What strtod/strtol accept but JSON does not: '+1', '.5', '5.', '01', '1e', '-'."""
    if not text.size:
        return True
    pad = np.uint8(ord(","))
    prev = np.concatenate(([pad], text[:-1]))
    nxt = np.concatenate((text[1:], [pad]))
    digit_prev, digit_next = _DIGIT[prev], _DIGIT[nxt]
    plus, minus = text == ord("+"), text == ord("-")
    dot, exp = text == ord("."), _EXP[text]
    if (plus & ~_EXP[prev]).any() or ((plus | minus) & ~digit_next).any():
        return False
    if (minus & ~(_EXP[prev] | _SPACE[prev] | (prev == pad))).any():
        return False
    if ((dot | exp) & ~digit_prev).any() or (dot & ~digit_next).any():
        return False
    if (exp & ~(digit_next | _SIGN[nxt])).any():
        return False
    before_prev = np.concatenate(([pad, pad], text[:-2]))
    starts = _SPACE[prev] | (prev == pad) | ((prev == ord("-")) & ~_EXP[before_prev])
    return not ((text == ord("0")) & starts & digit_next).any()
