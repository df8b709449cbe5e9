"""Tensor data in JSON (the ``"data"`` lists) to numpy arrays and back.

:func:`json_data_to_array` reads the ``data`` of one input as orjson parsed it, flat or
nested, checking every value against the datatype; :func:`json_data` is an output's data as
responses (and the inference log's payloads) write it.

The numeric JSON tensors of all but small requests are decoded straight into numpy, without
one Python object per number: orjson turns every number of a ``"data"`` array into a Python
object (8 to 40 bytes each on top of the text, and most of the parse time of a batch-32
request), so a 60 MB body of zeros took over 1 GB. For a request of FAST_MIN_BYTES or more,
the flat numeric ``data`` arrays are cut out of the text before orjson sees it, each
replaced by a placeholder string; :func:`decode_numbers` later converts that text in bounded
chunks with simdjson (a strict JSON number parser writing straight into a buffer) into an
array of the input's dtype, allocated once, after its size was checked against the request's
budget. A chunk simdjson refuses goes through a slower numpy reader that names what is wrong
with it. What is left for orjson is bounded by :func:`check_values` (about 40 bytes per JSON
value).
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import simdjson

from service.errors import BadRequest, PayloadTooLarge, short_repr
from service.tensors import ACCEPTED_JSON_KINDS, NUMPY_DTYPES, element_count

# Smaller documents go to orjson whole (a batch-1 request): below this size, finding and
# cutting the arrays costs about what orjson's Python numbers do.
FAST_MIN_BYTES = 16 * 1024
SPAN_MIN_BYTES = 1024  # shorter arrays stay in the document
CHUNK_BYTES = 1 << 20  # text converted per step: bounds temporaries and GIL hold times
VALUE_BYTES = 40  # a number in a list, as orjson builds it (slot + object)
CONTAINER_BYTES = 72  # an empty list or object
_DATA_KEY = b'"data"'
_JSON_SPACE = re.compile(rb"[ \t\r\n]*")
_EMPTY_VALUE = re.compile(rb"(?:^|,)[ \t\r\n]*(?:,|$)")  # "", " ", "1,,2", "1, "
# simdjson's buffer types by numpy kind: what each datatype is parsed as before its range check.
_PARSED_AS: dict[str, tuple[Literal["d", "i", "u"], np.dtype[Any]]] = {
    "f": ("d", np.dtype(np.float64)),
    "i": ("i", np.dtype(np.int64)),
    "u": ("u", np.dtype(np.uint64)),
}
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
    done = position = 0
    while (start := _next_data_array(text, position)) >= 0:
        end = text.find(b"]", start)
        if end < 0:
            break
        # "data" keys before this "]" are inside this array: never looked at again, so the
        # search stays linear in the body (such an inner array stays orjson's).
        position = end + 1
        if end - start < SPAN_MIN_BYTES:
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


def _next_data_array(text: bytes, position: int) -> int:
    """Where the text of the first ``"data": [...]`` array from `position` starts (past its
    bracket), or -1. A ``"data"`` with a backslash before it is inside a string (its quotes
    are escaped): skipped."""
    while (position := text.find(_DATA_KEY, position)) >= 0:
        after = position + len(_DATA_KEY)
        if position == 0 or text[position - 1] != ord("\\"):
            colon = _past_space(text, after)
            if text[colon : colon + 1] == b":":
                bracket = _past_space(text, colon + 1)
                if text[bracket : bracket + 1] == b"[":
                    return bracket + 1
        position = after
    return -1


def _past_space(text: bytes, index: int) -> int:
    match = _JSON_SPACE.match(text, index)
    return match.end() if match else index


def _only_number_bytes(span: memoryview) -> bool:
    for offset in range(0, len(span), CHUNK_BYTES):
        if bytes(span[offset : offset + CHUNK_BYTES]).translate(None, _NUMBER_BYTES):
            return False
    return True


def check_values(document: bytes, budget: int) -> None:
    """413 before orjson builds more Python objects than the request's memory budget."""
    if max(VALUE_BYTES, CONTAINER_BYTES) * len(document) + VALUE_BYTES <= budget:
        return  # one byte per comma or bracket at most: counting cannot reach the budget
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
    out = np.empty(count, dtype=dtype)  # the shape's bytes were checked against the budget
    filled = 0
    for chunk, alone in _chunks(span, name):
        values = _simdjson_chunk(chunk, dtype)
        if values is None or (not values.size and not alone):  # "1, ,2" or a trailing comma
            values = _parse_chunk(chunk, dtype, datatype, name)
        if filled + len(values) > count:
            raise _count_mismatch(span, shape, count, name)
        out[filled : filled + len(values)] = values
        filled += len(values)
    if filled != count:
        raise _count_mismatch(span, shape, count, name)
    return out.reshape(shape)


def check_numbers(span: memoryview) -> None:
    """400 unless a cut-out array no input reads (in parameters, a repeated key) is valid
    JSON: what orjson would have checked, had it seen it."""
    for chunk, alone in _chunks(span, "data"):
        document = _simdjson_array(chunk)
        if document is None or not (len(document) or alone):
            raise BadRequest("request body is not valid JSON: a 'data' array holds a bad number")


def _chunks(span: memoryview, name: str) -> Iterator[tuple[bytes, bool]]:
    """The span's text in pieces of about CHUNK_BYTES, cut at commas (each piece, and
    whether it is the whole span). Text with no comma for another CHUNK_BYTES is one number
    longer than any a tensor holds: refused before anything converts it, so a piece is at
    most twice CHUNK_BYTES."""
    position = 0
    while True:
        end = position + CHUNK_BYTES
        if end < len(span):
            comma = _find_comma(span, end, end + CHUNK_BYTES)
            if comma < 0 and len(span) - end > CHUNK_BYTES:
                raise BadRequest(
                    f"input '{name}': 'data' holds a number of more than {CHUNK_BYTES} bytes"
                )
            end = comma if comma >= 0 else len(span)
        else:
            end = len(span)
        yield bytes(span[position:end]), position == 0 and end == len(span)
        if end >= len(span):
            return
        position = end + 1


def _count_mismatch(span: memoryview, shape: list[int], count: int, name: str) -> BadRequest:
    commas = sum(
        bytes(span[offset : offset + CHUNK_BYTES]).count(b",")
        for offset in range(0, len(span), CHUNK_BYTES)
    )
    found = commas + 1
    return BadRequest(f"input '{name}': shape {shape} needs {count} elements, data has {found}")


def _find_comma(span: memoryview, start: int, stop: int) -> int:
    """The first comma in span[start:stop], or -1."""
    step = 4096
    stop = min(stop, len(span))
    while start < stop:
        found = bytes(span[start : min(start + step, stop)]).find(b",")
        if found >= 0:
            return start + found
        start += step
    return -1


def _simdjson_array(chunk: bytes) -> simdjson.Array | None:
    """The chunk as the items of a JSON array, or None where simdjson refuses it."""
    try:
        # A parser per chunk: as cheap as reusing one, and safe on any thread.
        document = simdjson.Parser().parse(b"[" + chunk + b"]")
    except (ValueError, TypeError, RuntimeError):  # its errors: bad number, big integer, ...
        return None
    return document if isinstance(document, simdjson.Array) else None  # "]" in the chunk


def _simdjson_chunk(chunk: bytes, dtype: np.dtype[Any]) -> np.ndarray | None:
    """The chunk's numbers as `dtype`, or None for whatever simdjson refuses or the dtype
    cannot hold (the careful reader, _parse_chunk, then names the problem)."""
    of_type, parsed = _PARSED_AS[dtype.kind]
    document = _simdjson_array(chunk)
    if document is None:
        return None
    try:
        values = np.frombuffer(document.as_buffer(of_type=of_type), dtype=parsed)
    except (ValueError, TypeError, RuntimeError):  # not all numbers, or not of that type
        return None
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            typed = values.astype(dtype)
        return None if np.isinf(typed).any() else typed  # JSON has no infinity: an overflow
    limits = np.iinfo(dtype)
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        return None
    return values.astype(dtype, copy=False)


def _parse_chunk(chunk: bytes, dtype: np.dtype[Any], datatype: str, name: str) -> np.ndarray:
    bad = f"input '{name}': 'data' is not a list of valid {datatype} numbers"
    if _EMPTY_VALUE.search(chunk) or not _json_number_grammar(np.frombuffer(chunk, np.uint8)):
        raise BadRequest(bad)  # numpy would read an empty value as -1
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
        with np.errstate(over="ignore"):  # an overflow is refused just below
            typed = values.astype(dtype) if values.dtype != dtype else values
        if np.isinf(typed).any():  # JSON has no infinity: an overflow
            raise BadRequest(f"input '{name}': a value is out of range for {datatype}")
        return typed
    limits = np.iinfo(parse)
    if (values == limits.max).any() or (dtype.kind == "i" and (values == limits.min).any()):
        # numpy saturates on overflow: check these few exactly, with Python integers.
        try:
            exact = [int(token) for token in chunk.split(b",")]
        except ValueError:  # more digits than Python converts (4300): far out of range
            raise BadRequest(f"input '{name}': a value is out of range for {datatype}") from None
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


# ---- the general reader: data as orjson parsed it -------------------------------------------


# struct's format codes (standard sizes): packing a flat list of JSON numbers checks each
# value's type and range in C, and writes the datatype's bytes directly.
_STRUCT_CODES: dict[str, str] = {
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
# What JSON cannot write as a number, as this server writes it (and numpy reads it).
NON_FINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class SpelledBooleans:
    """Whether a JSON document spells true or false anywhere: searched for once, and only when
    asked (scanning the body costs more than the checks that usually make the question moot).
    A memoryview is not searched: assume so."""

    def __init__(self, text: bytes | memoryview) -> None:
        self._text: bytes | memoryview | None = text
        self._found = False

    def __call__(self) -> bool:
        if (text := self._text) is not None:
            self._found = not isinstance(text, bytes) or b"true" in text or b"false" in text
            self._text = None
        return self._found


# The bytes of 0 and 1 in each datatype: true/false packed by struct become one of them.
_ZERO_AND_ONE = {
    datatype: (struct.pack(f"<{code}", 0), struct.pack(f"<{code}", 1))
    for datatype, code in _STRUCT_CODES.items()
}


def json_data_to_array(
    data: object,
    datatype: str,
    shape: list[int],
    name: str,
    spelled_booleans: SpelledBooleans | None = None,
) -> np.ndarray:
    """Convert the JSON ``data`` of one input (flat or nested, row-major) to an array.
    `spelled_booleans`: whether the document holds true/false at all (if not, no number needs
    a look at its type); None: assume so."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    count = element_count(shape)
    if datatype == "BYTES":
        flat = _flatten_strings(data, name)
        if len(flat) != count:
            raise BadRequest(
                f"input '{name}': shape {shape} needs {count} elements, data has {len(flat)}"
            )
        strings = np.empty(count, dtype=object)
        strings[:] = flat
        return strings.reshape(shape)
    code = _STRUCT_CODES.get(datatype)
    if code is None or len(data) != count:  # BOOL, or nested lists
        return _nested_data_to_array(data, datatype, shape, name)
    try:
        # The common case, a flat list of numbers: one C loop from Python numbers to the
        # datatype's bytes, refusing non-numbers, floats for integers, and out-of-range values.
        packed = struct.pack(f"<{count}{code}", *data)
    except (struct.error, OverflowError):  # the general path names the culprit
        return _nested_data_to_array(data, datatype, shape, name)
    values = np.ndarray(shape, NUMPY_DTYPES[datatype], packed)
    zero, one = _ZERO_AND_ONE[datatype]
    # Without the bytes of a 0 or a 1 anywhere (aligned or not), no true/false was packed.
    if count and (zero in packed or one in packed) and _holds_bools(data, values, spelled_booleans):
        raise BadRequest(f"input '{name}': 'data' holds true/false, not valid {datatype} values")
    return values


def _typed(values: np.ndarray, datatype: str, name: str) -> np.ndarray:
    """``values`` as the datatype's dtype; a float beyond its range is refused, not inf."""
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind != "f":
        return values.view(dtype) if values.dtype.itemsize == dtype.itemsize else values
    with np.errstate(over="ignore"):
        typed = values.astype(dtype)
    overflow = np.isinf(typed) & np.isfinite(values)
    if overflow.any():
        value = values[np.argmax(overflow)]
        raise BadRequest(f"input '{name}': value {value:g} is out of range for {datatype}")
    return typed


def _nested_data_to_array(
    data: list[Any], datatype: str, shape: list[int], name: str
) -> np.ndarray:
    """Nested lists, BOOL data, and whatever the flat path refused (for its error message)."""
    count = element_count(shape)
    try:
        array_ = np.array(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input '{name}': 'data' is not a rectangular array of numbers") from None
    if array_.size != count:
        raise BadRequest(
            f"input '{name}': shape {shape} needs {count} elements, data has {array_.size}"
        )
    dtype = NUMPY_DTYPES[datatype]
    if count and array_.dtype.kind == "O" and dtype.kind in "iuf":
        flat = array_.reshape(-1)
        if all(type(value) is int for value in flat):  # integers beyond 64 bits
            huge = next(value for value in flat if abs(value) >= 2**63)
            raise BadRequest(
                f"input '{name}': value {short_repr(huge)} is out of range for {datatype}"
            )
    if count and dtype.kind == "f" and array_.dtype.kind in "UO":
        array_ = _with_non_finite_names(data, array_, datatype, name)
    if count and dtype.kind in "iu" and array_.dtype.kind == "f":
        array_ = _exact_integers(data, dtype, datatype, name)
    if count and array_.dtype.kind not in ACCEPTED_JSON_KINDS[datatype]:
        raise BadRequest(
            f"input '{name}': 'data' holds {array_.dtype} values, not valid {datatype} values"
        )
    if count and datatype != "BOOL" and _holds_bools(data, array_):
        raise BadRequest(f"input '{name}': 'data' holds true/false, not valid {datatype} values")
    if count and dtype.kind in "iu":
        limits = np.iinfo(dtype)
        low, high = array_.min(), array_.max()
        if low < limits.min or high > limits.max:
            raise BadRequest(
                f"input '{name}': value {low if low < limits.min else high} "
                f"is out of range for {datatype}"
            )
    if count and dtype.kind == "f":
        return _typed(array_.astype(np.float64).reshape(-1), datatype, name).reshape(shape)
    return array_.astype(dtype, copy=False).reshape(shape)


def _with_non_finite_names(
    data: list[Any], array_: np.ndarray, datatype: str, name: str
) -> np.ndarray:
    """Float data mixing numbers with "NaN", "Infinity" or "-Infinity" (how responses write
    them); anything else is left as it was, for the caller to refuse."""
    converted: list[float] = []
    for value in np.array(data, dtype=object).reshape(-1):
        if type(value) is str and value in NON_FINITE_NAMES:
            converted.append(NON_FINITE_NAMES[value])
        elif type(value) in (int, float):
            converted.append(value)
        else:
            return array_
    return np.array(converted, dtype=np.float64).reshape(array_.shape)


def _holds_bools(
    data: list[Any], values: np.ndarray, spelled_booleans: SpelledBooleans | None = None
) -> bool:
    """numpy and struct turn true/false mixed with numbers into 1/0: look for them, but only
    when the document spells true or false and there is a 0 or 1 at all, which keeps typical
    data on the vectorised path."""
    if values.dtype.kind not in "iufb" or not np.count_nonzero((values == 0) | (values == 1)):
        return False
    if spelled_booleans is not None and not spelled_booleans():
        return False
    return bool in set(map(type, np.array(data, dtype=object).reshape(-1)))


def _exact_integers(data: list[Any], dtype: np.dtype[Any], datatype: str, name: str) -> np.ndarray:
    """numpy infers float64 for ints beyond int64 (large UINT64 values): convert exactly."""
    flat = np.array(data, dtype=object).reshape(-1)
    if not all(type(value) is int for value in flat):
        return np.array(data)  # really holds floats: rejected by the caller
    try:
        return np.array(data, dtype=dtype)
    except OverflowError:
        raise BadRequest(f"input '{name}': a value is out of range for {datatype}") from None


def _flatten_strings(data: list[Any], name: str) -> list[str]:
    flat: list[str] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise BadRequest(
                    f"input '{name}': BYTES data must be strings, got {short_repr(item)}"
                )
            flat.append(item)
        else:
            stack.pop()
    return flat


# ---- the writer --------------------------------------------------------------------------


def json_data(array_: np.ndarray, datatype: str) -> list[str] | np.ndarray:
    """An output's ``data``: a flat list of texts for BYTES, else the flat array (orjson
    writes NaN and infinity as null: see number_or_name)."""
    flat = array_.reshape(-1)
    if datatype == "BYTES":
        return [e.decode("utf-8", "replace") if isinstance(e, bytes) else str(e) for e in flat]
    return np.ascontiguousarray(flat)  # orjson serializes numpy arrays natively


def number_or_name(value: float) -> float | str:
    """A float as JSON can hold it: itself, or one of NON_FINITE_NAMES."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
