"""Open Inference Protocol v2 inference requests and responses (JSON and binary forms).

Parsing validates everything against the model's signature before any inference runs, and
turns tensor data into numpy arrays without per-element Python work for numeric types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.binary import (
    BINARY_DATA_SIZE,
    HEADER_LENGTH_HEADER,
    RequestTail,
    ResponseTail,
    split_body,
)
from service.errors import BadRequest, PayloadTooLarge, short_repr
from service.json_tensors import (
    SpelledBooleans,
    check_numbers,
    check_values,
    cut_numeric_arrays,
    decode_numbers,
    json_data,
    json_data_to_array,
    number_or_name,
)
from service.tensors import NUMPY_DTYPES, TensorSpec, element_count

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
    # Only a document that spells true or false can hold a boolean among its numbers.
    spelled_booleans = SpelledBooleans(text)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {short_repr(request_id)}")
    parameters = _parameters(document, "request")
    binary_default = _flag(parameters, "binary_data_output", "request")
    unread = dict(spans)  # each input's data takes its own; the rest is only checked
    arrays = _parse_inputs(document.get("inputs"), tail, inputs, unread, budget, spelled_booleans)
    for span in unread.values():
        check_numbers(span)
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
        raise BadRequest(
            f"parameter '{key}' of {where} must be true or false, got {short_repr(value)}"
        )
    return value


def _parse_inputs(
    entries: object,
    tail: RequestTail,
    specs: Mapping[str, TensorSpec],
    spans: dict[str, memoryview],
    budget: int | None,
    spelled_booleans: SpelledBooleans,
) -> dict[str, np.ndarray]:
    if not isinstance(entries, list) or not entries:
        raise BadRequest("'inputs' must be a non-empty list")
    arrays: dict[str, np.ndarray] = {}
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
        size = _parameters(entry, f"input '{name}'").get(BINARY_DATA_SIZE)
        if size is None:
            if "data" not in entry:
                raise BadRequest(f"input '{name}' has neither 'data' nor binary_data_size")
            data = entry["data"]
            if type(data) is str and data in spans:
                count = element_count(shape)
                arrays[name] = decode_numbers(spans.pop(data), datatype, shape, count, name)
            else:
                arrays[name] = json_data_to_array(data, datatype, shape, name, spelled_booleans)
            continue
        if "data" in entry:
            raise BadRequest(f"input '{name}' has both 'data' and binary_data_size")
        arrays[name] = tail.take(size, datatype, shape, name)
    tail.check_claimed()
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
        raise BadRequest(
            f"unknown input {short_repr(name)}; the model's inputs are {', '.join(specs)}"
        )
    datatype = entry.get("datatype")
    if datatype != spec.datatype:
        raise BadRequest(
            f"input '{spec.name}' has datatype {short_repr(datatype)}, "
            f"the model expects {spec.datatype}"
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
            f"input '{spec.name}' has shape {short_repr(shape)}, whose sizes multiply to more "
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
            f"input '{spec.name}' has shape {short_repr(shape)}, which is not a list of sizes "
            f"(integers 0 or more); {expected}"
        )
    return BadRequest(f"input '{spec.name}' has shape {short_repr(shape)}, {expected}")


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
                f"unknown output {short_repr(name)}; the model's outputs are {', '.join(specs)}"
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
    tail = ResponseTail()
    for output in request.outputs:
        array = results[output.name]
        datatype = specs[output.name].datatype
        entry: dict[str, object] = {
            "name": output.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if output.binary:
            entry["parameters"] = tail.add(array, datatype)
        else:
            entry["data"] = json_data(array, datatype)
        entries.append(entry)
    document: dict[str, object] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = entries
    header = orjson.dumps(document, option=JSON_OPTIONS)
    if b"null" in header:  # orjson writes NaN and infinity as null: name them instead
        for entry in entries:
            if isinstance(data := entry.get("data"), np.ndarray) and data.dtype.kind == "f":
                entry["data"] = [number_or_name(value) for value in data.tolist()]
        header = orjson.dumps(document, option=JSON_OPTIONS)
    return EncodedResponse(*tail.join(header))
