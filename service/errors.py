"""The errors a client can get, each a class carrying its HTTP status (Triton's mapping).

Every error answer, from the application or the connection layer (http.py), has the body
:func:`error_body` builds: ``{"error": "..."}``; openapi.py documents ERRORS.
"""

from __future__ import annotations

import reprlib
from typing import ClassVar

import orjson

# How much of a client's text (a model name, a version, ...) an error message echoes, and the
# most any message holds: a 60 KB name in a URL gets a small answer.
SHOWN_CHARS = 200
MAX_MESSAGE_CHARS = 2000


class ApiError(Exception):
    """A client-visible failure; subclasses name the status and what it means."""

    status: ClassVar[int] = 500
    description: ClassVar[str] = "Server fault"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)  # a backstop: each echoed value is clipped
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
    description = "Content-Encoding other than gzip (x-gzip), deflate or identity"


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


def error_body(message: str) -> bytes:
    """The JSON body of every error answer."""
    return orjson.dumps({"error": message})


def unexpected(exc: Exception) -> ServerFault:
    """What a client is told of a bug (an exception that is no ApiError): its type only."""
    return ServerFault(f"internal server error: {type(exc).__name__}")


# Bounded depth and length: a client's value nested 1,000 deep must not recurse in repr().
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 4, 8, 8
_SHOWN.maxstring = _SHOWN.maxother = 60


def short_repr(value: object, limit: int = 80) -> str:
    """A client's value for an error message: its repr, cut short so junk stays readable."""
    text = _SHOWN.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """A client's text for an error message: whole up to `limit` characters, else its start,
    an ellipsis and its full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
