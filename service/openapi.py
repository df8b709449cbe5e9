"""OpenAPI description of the inference endpoints.

They are plain Starlette routes reading the raw body (for speed and for the binary
extension), so FastAPI cannot derive their schema; it is written out here and merged into
the generated document, for docs and schema-driven API fuzzers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.errors import ERRORS
from service.tensors import NUMPY_DTYPES

INFER_PATHS = (
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
)

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


def _path_parameter(name: str) -> dict[str, object]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


INFER_OPERATION: dict[str, object] = {
    "summary": "Run inference",
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
        "200": {
            "description": "Outputs (JSON, or JSON header + binary tensors)",
            "content": {"application/json": {}, "application/octet-stream": {}},
        },
        **{str(error.status): {"description": error.description, **_ERROR} for error in ERRORS},
    },
}


def infer_path_items() -> dict[str, dict[str, object]]:
    items: dict[str, dict[str, object]] = {}
    for path in INFER_PATHS:
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        operation = {**INFER_OPERATION, "parameters": [_path_parameter(n) for n in names]}
        items[path] = {"post": operation}
    return items


def install_openapi(app: FastAPI) -> None:
    """Make ``/openapi.json`` include the inference endpoints."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("paths", {}).update(infer_path_items())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
