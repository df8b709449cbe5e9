"""The inference log's configuration, from the PREDICTION_LOG_* settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.inference_log.database_url import LogConfigError, check_url, split_password
from service.settings import Settings

# Memory the queued rows may hold, the batch being written included: each row is charged
# what entries.row_cost says (its texts, its kept tensors with PREDICTION_LOG_PAYLOADS=1).
QUEUE_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LogConfig:
    url: str
    password: str | None
    payloads: bool
    queue_size: int
    flush_timeout_s: float
    queue_bytes: int = QUEUE_BUDGET_BYTES


def config_from(settings: Settings) -> LogConfig:
    """The log's configuration; LogConfigError when the URL or password file is unusable."""
    assert settings.prediction_log_url is not None
    url, password = split_password(settings.prediction_log_url)
    check_url(url)
    if settings.prediction_log_password_file is not None:
        path = settings.prediction_log_password_file
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise LogConfigError(
                f"PREDICTION_LOG_PASSWORD_FILE={str(path)!r} cannot be read: {reason}"
            ) from None
    return LogConfig(
        url,
        password,
        settings.prediction_log_payloads,
        settings.prediction_log_queue_size,
        settings.prediction_log_flush_timeout_s,
    )
