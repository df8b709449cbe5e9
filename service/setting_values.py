"""How a setting's text becomes its value (service/settings.py declares which one each
setting uses): every parser returns the value or raises ValueError saying what is wanted.
Stdlib only, as service/settings.py."""

from __future__ import annotations

import re
from collections.abc import Callable

AUTO_WORKERS = 0  # WORKERS=auto, replaced by a count at startup (service/auto_workers.py)
# Short provider names users write in EXECUTION_PROVIDERS -> ONNX Runtime provider names.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def int_in(low: int, high: int) -> Callable[[str], int]:
    wanted = f"must be an integer from {low} to {high}"

    def convert(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:  # Python's "invalid literal for int()" says less
            raise ValueError(wanted) from None
        if not low <= value <= high:
            raise ValueError(wanted)
        return value

    return convert


def float_in(low: float, high: float) -> Callable[[str], float]:
    wanted = f"must be a number from {low} to {high}"

    def convert(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(wanted) from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(wanted)
        return value

    return convert


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return convert


def providers(raw: str) -> tuple[str, ...]:
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


def sha256(raw: str) -> str:
    value = raw.lower()
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 hexadecimal characters")
    return value


def boolean(raw: str) -> bool:
    value = raw.lower()
    if value not in _BOOLEANS:
        raise ValueError("must be 1 or 0 (also true/false, yes/no, on/off)")
    return _BOOLEANS[value]


def workers(raw: str) -> int:
    if raw.lower() == "auto":
        return AUTO_WORKERS
    try:
        return int_in(1, 64)(raw)
    except ValueError:
        raise ValueError("must be auto or an integer from 1 to 64") from None


def model_name(raw: str) -> str:
    if not _MODEL_NAME.fullmatch(raw):
        raise ValueError("use only letters, digits, '_', '.' and '-'")
    return raw


def model_version(raw: str) -> int:
    # Digits only, as a repository's version folders: "+3", "1_0" or " 3" are not versions.
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValueError("must be a positive integer (a version number: 1, 2, 3, ...)")
    return int(raw)
