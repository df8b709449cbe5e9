"""The one exception type the HTTP layer turns into ``{"error": "..."}`` responses."""

from __future__ import annotations


class ApiError(Exception):
    """A client-visible failure with its HTTP status (Triton's mapping: 400, 404, 408, 413, 503)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def show(value: object, limit: int = 80) -> str:
    """A client's value for an error message: its repr, cut short so junk stays readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
