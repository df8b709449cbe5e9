"""PREDICTION_LOG_URL: checking a PostgreSQL URL, and keeping its password out of every log line.

A malformed URL is one LogConfigError, whose message shows the URL with its password redacted.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

SCHEMES = ("postgresql", "postgres")


class LogConfigError(ValueError):
    """PREDICTION_LOG_* cannot work as given; the message is safe to log (no password)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***, even when it is malformed."""
    head, at, tail = url.rpartition("@")
    if at:
        scheme, sep, userinfo = head.partition("://")
        prefix = scheme + sep if sep else ""
        userinfo = userinfo if sep else head
        if ":" in userinfo:
            head = prefix + userinfo.split(":", 1)[0] + ":***"
        url = head + at + tail
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


def split_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password percent-decoded, or None).

    The userinfo ends at the last '@', so a password with an unencoded '#', '/', '?', '@' or
    '%' is still the password: no URL parser, log line or error message ever sees it."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon):
        return url, None
    return f"{scheme}://{quote(unquote(user), safe='')}@{hostpart}", unquote(password)


def describe_target(url: str) -> str:
    """user@host:port/database of a valid URL, for log lines."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else "(default user)"
    where = parts.hostname or "(default host)"
    return f"{user}@{where}:{parts.port or 5432}{parts.path or '/'}"


def check_url(url: str) -> None:
    """Raise LogConfigError when ``url`` cannot be a PostgreSQL connection URL."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when not a number in range
    except ValueError as exc:
        raise LogConfigError(f"PREDICTION_LOG_URL={shown!r} is malformed: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise LogConfigError(
            f"PREDICTION_LOG_URL={shown!r} is not a postgresql://user@host[:port]/database URL"
        )
    if any(char.isspace() for char in url):
        raise LogConfigError(f"PREDICTION_LOG_URL={shown!r} contains whitespace")
