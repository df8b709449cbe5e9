"""The errors a client can get, each a class carrying its HTTP status (Triton's mapping).

The HTTP layer turns every one into ``{"error": "..."}``; openapi.py documents ERRORS.
"""

from __future__ import annotations

import reprlib
from typing import ClassVar


class ApiError(Exception):
    """A client-visible failure; subclasses name the status and what it means."""

    status: ClassVar[int] = 500
    description: ClassVar[str] = "Server fault"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400
    description = "Bad request: the message names the bad value"


class NotFound(ApiError):
    status = 404
    description = "Unknown model or version"


class RequestTimeout(ApiError):
    status = 408
    description = "Headers not received within HEADER_TIMEOUT_S, or body within BODY_TIMEOUT_S"


class PayloadTooLarge(ApiError):
    status = 413
    description = "Body larger than MAX_BODY_BYTES"


class UnsupportedMediaType(ApiError):
    status = 415
    description = "Content-Encoding other than gzip, deflate or identity"


class HeadersTooLarge(ApiError):
    status = 431
    description = "Request line and headers larger than MAX_HEADER_BYTES"


class Unavailable(ApiError):
    status = 503
    description = "Overloaded (MAX_INFLIGHT reached; see Retry-After) or shutting down"


class ServerFault(ApiError):
    status = 500
    description = "Server fault (the model failed on valid input)"


# Every error the inference endpoints answer with, for the OpenAPI document.
ERRORS: tuple[type[ApiError], ...] = (
    BadRequest,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadersTooLarge,
    Unavailable,
    ServerFault,
)


# Bounded depth and length: a client's value nested 1,000 deep must not recurse in repr().
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 4, 8, 8
_SHOWN.maxstring = _SHOWN.maxother = 60


def show(value: object, limit: int = 80) -> str:
    """A client's value for an error message: its repr, cut short so junk stays readable."""
    text = _SHOWN.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
