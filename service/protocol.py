"""Open Inference Protocol v2 inference requests and responses (JSON and binary forms).

Parsing validates everything against the model's signature before any inference runs, and
turns tensor data into numpy arrays without per-element Python work for numeric types.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.binary import HEADER_LENGTH_HEADER, decode_tensor, encode_tensor, join_body, split_body
from service.errors import BadRequest, PayloadTooLarge, show
from service.json_tensors import check_values, cut_numeric_arrays, decode_numbers
from service.tensors import ACCEPTED_JSON_KINDS, NUMPY_DTYPES, TensorSpec, element_count

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Sizes whose product numpy (int64 byte counts) can still take, zeros left out.
MAX_DIMENSIONS_PRODUCT = 1 << 48
# A decoded BYTES element: its slot and a str object's header (its text is in the body).
BYTES_ELEMENT_BYTES = 64


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """A validated request: arrays keyed by input name, and which outputs to return how."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput]


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    body: bytes
    media_type: str
    headers: dict[str, str]


def parse_inference_request(
    body: bytes,
    headers: Mapping[str, str],
    inputs: Mapping[str, TensorSpec],
    outputs: Mapping[str, TensorSpec],
    budget: int | None = None,
) -> InferenceRequest:
    """Parse and validate a request body against a model's inputs and outputs. `budget`:
    the bytes its tensors may decode to (413 beyond, checked before anything is allocated);
    with it, large numeric JSON arrays are converted without a Python object per number."""
    header, tail = split_body(body, headers.get(HEADER_LENGTH_HEADER))
    spans: dict[str, memoryview] = {}
    text: bytes | memoryview = header
    if budget is not None:
        text = body if len(header) == len(body) else bytes(header)
        text, spans = cut_numeric_arrays(text)
        check_values(text, budget)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {show(request_id)}")
    parameters = _parameters(document, "request")
    binary_default = _flag(parameters, "binary_data_output", "request")
    arrays = _parse_inputs(document.get("inputs"), tail, inputs, spans, budget)
    return InferenceRequest(
        id=request_id,
        inputs=arrays,
        outputs=_parse_outputs(document.get("outputs"), outputs, binary_default),
    )


def _parameters(entry: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest(f"'parameters' of {where} must be an object")
    if "shared_memory_region" in parameters:
        raise BadRequest(f"{where}: shared memory is not supported by this server")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter '{key}' of {where} must be true or false, got {show(value)}")
    return value


def _parse_inputs(
    entries: object,
    tail: memoryview,
    specs: Mapping[str, TensorSpec],
    spans: Mapping[str, memoryview],
    budget: int | None,
) -> dict[str, np.ndarray]:
    if not isinstance(entries, list) or not entries:
        raise BadRequest("'inputs' must be a non-empty list")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    decoded = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("each entry of 'inputs' must be an object")
        name, datatype, shape = _tensor_header(entry, specs)
        if name in arrays:
            raise BadRequest(f"input '{name}' is given twice")
        if budget is not None:
            decoded += decoded_bytes(datatype, shape)
            if decoded > budget:
                raise PayloadTooLarge(
                    f"input '{name}': shape {shape} of {datatype} takes the request's "
                    f"tensors to {decoded} bytes, over its memory budget of {budget} bytes "
                    "(2 x MAX_BODY_BYTES)"
                )
        size = _parameters(entry, f"input '{name}'").get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise BadRequest(f"input '{name}' has neither 'data' nor binary_data_size")
            data = entry["data"]
            if type(data) is str and data in spans:
                count = element_count(shape)
                arrays[name] = decode_numbers(spans[data], datatype, shape, count, name)
            else:
                arrays[name] = json_data_to_array(data, datatype, shape, name)
            continue
        if "data" in entry:
            raise BadRequest(f"input '{name}' has both 'data' and binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input '{name}': binary_data_size {show(size)} is not a size")
        if offset + size > len(tail):
            raise BadRequest(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({len(tail) - offset} bytes left)"
            )
        arrays[name] = decode_tensor(tail[offset : offset + size], datatype, shape, name)
        offset += size
    if offset != len(tail):
        raise BadRequest(
            f"body has {len(tail) - offset} bytes of binary data not claimed by any input"
        )
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise BadRequest(f"missing input '{missing[0]}'")
    return arrays


def _tensor_header(
    entry: dict[str, Any], specs: Mapping[str, TensorSpec]
) -> tuple[str, str, list[int]]:
    """Check an input's name, datatype and shape against the model; return them."""
    name = entry.get("name")
    spec = specs.get(name) if isinstance(name, str) else None
    if spec is None:
        raise BadRequest(f"unknown input {show(name)}; the model's inputs are {', '.join(specs)}")
    datatype = entry.get("datatype")
    if datatype != spec.datatype:
        raise BadRequest(
            f"input '{spec.name}' has datatype {show(datatype)}, the model expects {spec.datatype}"
        )
    shape = entry.get("shape")
    if type(shape) is not list or len(shape) != len(spec.shape):
        raise _shape_error(spec, shape)
    for dim, want in zip(shape, spec.shape, strict=True):
        if type(dim) is not int or dim < 0 or (want != -1 and want != dim):
            raise _shape_error(spec, shape)
    if element_count([dim for dim in shape if dim]) > MAX_DIMENSIONS_PRODUCT:
        # Even with no elements (a 0 among them), numpy cannot make such a shape.
        raise BadRequest(
            f"input '{spec.name}' has shape {show(shape)}, whose sizes multiply to more "
            f"than {MAX_DIMENSIONS_PRODUCT}"
        )
    return spec.name, spec.datatype, shape


def decoded_bytes(datatype: str, shape: list[int]) -> int:
    """What a tensor of this shape takes once decoded (a BYTES element: its object)."""
    count = element_count(shape)
    return count * (BYTES_ELEMENT_BYTES if datatype == "BYTES" else NUMPY_DTYPES[datatype].itemsize)


def _shape_error(spec: TensorSpec, shape: object) -> BadRequest:
    expected = f"the model expects {list(spec.shape)}"
    expected += " (-1: any size)" if -1 in spec.shape else ""
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        # -1 ("any size") belongs in model metadata; a request states the sizes it sends.
        return BadRequest(
            f"input '{spec.name}' has shape {show(shape)}, which is not a list of sizes "
            f"(integers 0 or more); {expected}"
        )
    return BadRequest(f"input '{spec.name}' has shape {show(shape)}, {expected}")


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


def json_data_to_array(data: object, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """Convert the JSON ``data`` of one input (flat or nested, row-major) to an array."""
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
    if count and _holds_bools(data, values):
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
            raise BadRequest(f"input '{name}': value {show(huge)} is out of range for {datatype}")
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


def _holds_bools(data: list[Any], values: np.ndarray) -> bool:
    """numpy and array.array turn true/false mixed with numbers into 1/0: look for them, but
    only when there is a 0 or 1 at all, which keeps typical data on the vectorised path."""
    if values.dtype.kind not in "iufb" or not np.count_nonzero((values == 0) | (values == 1)):
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
                raise BadRequest(f"input '{name}': BYTES data must be strings, got {show(item)}")
            flat.append(item)
        else:
            stack.pop()
    return flat


def _parse_outputs(
    entries: object, specs: Mapping[str, TensorSpec], binary_default: bool
) -> list[RequestedOutput]:
    if entries is None or entries == []:  # the spec sets no minimum: [] means all, as absent
        return [RequestedOutput(name, binary_default) for name in specs]
    if not isinstance(entries, list):
        raise BadRequest("'outputs' must be a list when given")
    requested: list[RequestedOutput] = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in specs:
            raise BadRequest(
                f"unknown output {show(name)}; the model's outputs are {', '.join(specs)}"
            )
        parameters = _parameters(entry, f"output '{name}'")
        if "classification" in parameters:
            raise BadRequest(f"output '{name}': the classification extension is not supported")
        binary = (
            _flag(parameters, "binary_data", f"output '{name}'")
            if ("binary_data" in parameters)
            else binary_default
        )
        requested.append(RequestedOutput(name, binary))
    return requested


def encode_inference_response(
    model_name: str,
    model_version: str,
    request: InferenceRequest,
    results: Mapping[str, np.ndarray],
    specs: Mapping[str, TensorSpec],
) -> EncodedResponse:
    """Build the response; outputs asked for in binary go after the JSON header."""
    entries: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for output in request.outputs:
        array = results[output.name]
        datatype = specs[output.name].datatype
        entry: dict[str, object] = {
            "name": output.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if output.binary:
            raw = encode_tensor(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array, datatype)
        entries.append(entry)
    document: dict[str, object] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = entries
    header = orjson.dumps(document, option=JSON_OPTIONS)
    if b"null" in header:  # orjson writes NaN and infinity as null: name them instead
        for entry in entries:
            if isinstance(data := entry.get("data"), np.ndarray) and data.dtype.kind == "f":
                entry["data"] = [_number_or_name(value) for value in data.tolist()]
        header = orjson.dumps(document, option=JSON_OPTIONS)
    body, headers = join_body(header, chunks)
    media_type = "application/octet-stream" if chunks else "application/json"
    return EncodedResponse(body, media_type, headers)


def _json_data(array_: np.ndarray, datatype: str) -> object:
    flat = array_.reshape(-1)
    if datatype == "BYTES":
        return [e.decode("utf-8", "replace") if isinstance(e, bytes) else str(e) for e in flat]
    return np.ascontiguousarray(flat)  # orjson serializes numpy arrays natively


def _number_or_name(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
