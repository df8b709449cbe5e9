"""Server configuration from environment variables.

Every setting is parsed and validated once at startup; a bad value raises
:class:`SettingsError` whose message names the variable and the value, so ``python -m service``
can stop with one clear line instead of failing later on the first request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

# Short provider names users write in EXECUTION_PROVIDERS -> ONNX Runtime provider names.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and value."""


@dataclass(frozen=True)
class Settings:
    """Validated server settings (see the README's configuration table)."""

    host: str = "0.0.0.0"
    port: int = 8000
    model_repository: Path | None = None
    model_path: Path | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int | None = None  # None: the CPUs this process may really use
    inference_workers: int = 1
    max_batch_size: int = 0  # 0 or 1: dynamic batching off
    # 0: merge what queued up while the previous run was busy, never wait for company (a
    # fixed wait only slowed one core down in bench/: docs/OPTIMIZATION.md, finding 4).
    max_batch_delay_ms: float = 0.0
    max_body_bytes: int = 64 * 1024 * 1024
    body_timeout_s: float = 30.0
    max_inflight: int = 128
    log_level: str = "info"
    log_format: str = "text"

    @property
    def batching_enabled(self) -> bool:
        return self.max_batch_size > 1


def _parse(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], T]) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return convert(raw.strip())
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"invalid {name}={raw!r}: {exc}") from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return convert


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def convert(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also rejects nan
            raise ValueError(f"must be a number from {low} to {high}")
        return value

    return convert


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return convert


def _providers(raw: str) -> tuple[str, ...]:
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not names:
        raise ValueError("empty provider list")
    unknown = [name for name in names if name not in PROVIDER_ALIASES]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(PROVIDER_ALIASES)})")
    resolved = [PROVIDER_ALIASES[name] for name in dict.fromkeys(names)]
    # CPU is always the last resort, so a missing GPU degrades instead of failing.
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")
    return tuple(resolved)


def _sha256(raw: str) -> str:
    value = raw.lower()
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 hexadecimal characters")
    return value


def _model_name(raw: str) -> str:
    if not _MODEL_NAME.fullmatch(raw):
        raise ValueError("use only letters, digits, '_', '.' and '-'")
    return raw


def _path(raw: str) -> Path:
    return Path(raw)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate all settings from ``env`` (normally ``os.environ``)."""
    settings = Settings(
        host=_parse(env, "HOST", Settings.host, str),
        port=_parse(env, "PORT", Settings.port, _int_in(0, 65535)),
        model_repository=_parse(env, "MODEL_REPOSITORY", None, _path),
        model_path=_parse(env, "MODEL_PATH", None, _path),
        model_name=_parse(env, "MODEL_NAME", None, _model_name),
        model_sha256=_parse(env, "MODEL_SHA256", None, _sha256),
        execution_providers=_parse(
            env, "EXECUTION_PROVIDERS", Settings.execution_providers, _providers
        ),
        intra_op_threads=_parse(env, "INTRA_OP_THREADS", None, _int_in(1, 1024)),
        inference_workers=_parse(
            env, "INFERENCE_WORKERS", Settings.inference_workers, _int_in(1, 64)
        ),
        max_batch_size=_parse(env, "MAX_BATCH_SIZE", Settings.max_batch_size, _int_in(0, 65536)),
        max_batch_delay_ms=_parse(
            env, "MAX_BATCH_DELAY_MS", Settings.max_batch_delay_ms, _float_in(0.0, 60_000.0)
        ),
        max_body_bytes=_parse(env, "MAX_BODY_BYTES", Settings.max_body_bytes, _int_in(1024, 2**40)),
        body_timeout_s=_parse(
            env, "BODY_TIMEOUT_S", Settings.body_timeout_s, _float_in(0.001, 3600.0)
        ),
        max_inflight=_parse(env, "MAX_INFLIGHT", Settings.max_inflight, _int_in(1, 1_000_000)),
        log_level=_parse(env, "LOG_LEVEL", Settings.log_level, _choice(LOG_LEVELS)),
        log_format=_parse(env, "LOG_FORMAT", Settings.log_format, _choice(LOG_FORMATS)),
    )
    if settings.model_path is not None and settings.model_repository is not None:
        raise SettingsError(
            f"set only one of MODEL_PATH={str(settings.model_path)!r} and "
            f"MODEL_REPOSITORY={str(settings.model_repository)!r}"
        )
    return settings
