"""OpenAPI description of the inference request body.

The endpoint reads the raw body itself (for speed and for the binary extension), so FastAPI
cannot derive this schema; it is written out here for docs and schema-driven API fuzzers.
"""

from __future__ import annotations

from service.tensors import NUMPY_DTYPES

_PARAMETERS = {"type": "object", "additionalProperties": True}

INFER_REQUEST_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": list(NUMPY_DTYPES)},
                    "parameters": _PARAMETERS,
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
}

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    }
}

INFER_OPENAPI: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": INFER_REQUEST_SCHEMA},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary tensor extension: JSON header of "
                "Inference-Header-Content-Length bytes, then raw tensors.",
            },
        },
    },
    "responses": {
        "400": {"description": "Bad request", **_ERROR},
        "404": {"description": "Unknown model or version", **_ERROR},
        "413": {"description": "Body larger than MAX_BODY_BYTES", **_ERROR},
        "503": {"description": "Overloaded: MAX_INFLIGHT reached", **_ERROR},
    },
}
