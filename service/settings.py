"""Server configuration from environment variables, each declared once below.

A setting is a field of :class:`Settings` whose metadata holds its variable name, parser and
documentation; :func:`load_settings` reads them all, and the configuration table of
docs/SERVER.md is :func:`settings_table` (scripts/docs_tables.py writes it there;
``python -m service.settings`` prints it; ``python -m service --help`` lists the same
declarations as :func:`settings_help`). Every value is validated at startup: a bad one
raises :class:`SettingsError` naming the variable and the value, so ``python -m service``
stops with one clear line instead of failing on the first request. Stdlib only: the images'
health check imports it.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from service import setting_values as values

# Dynamic batching's cap when MAX_BATCH_SIZE is unset (docs/OPTIMIZATION.md: why 64).
DEFAULT_MAX_BATCH_SIZE = 64
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and value."""


@dataclass(frozen=True)
class Setting:
    """How one field is read from the environment and documented."""

    env: str
    parse: Callable[[str], Any]
    doc: str
    shown_default: str | None  # the docs' default column, when not the value itself


def setting(
    env: str,
    default: Any,
    parse: Callable[[str], Any],
    doc: str,
    shown_default: str | None = None,
    secret: bool = False,
) -> Any:
    """A Settings field read from `env` with `parse`; `doc` is its docs/SERVER.md line. A `secret`
    one (it may hold a password) is left out of the Settings repr."""
    return field(
        default=default,
        repr=not secret,
        metadata={"setting": Setting(env, parse, doc, shown_default)},
    )


@dataclass(frozen=True)
class Settings:
    """Validated server settings: docs/SERVER.md's configuration table is made from these."""

    host: str = setting("HOST", "0.0.0.0", str, "Address to listen on.")
    port: int = setting("PORT", 8000, values.int_in(0, 65535), "Port to listen on.")
    model_repository: Path | None = setting(
        "MODEL_REPOSITORY",
        None,
        Path,
        "Folder of `<name>/<version>/model.onnx`; several models and versions.",
        "bundled `models/`",
    )
    model_path: Path | None = setting(
        "MODEL_PATH",
        None,
        Path,
        "One `.onnx` file to serve as version `MODEL_VERSION` (exclusive with `MODEL_REPOSITORY`).",
    )
    model_name: str | None = setting(
        "MODEL_NAME",
        None,
        values.model_name,
        "Model name for `MODEL_PATH`.",
        "file stem (`…/mlp/1/model.onnx` → `mlp`)",
    )
    model_version: int = setting(
        "MODEL_VERSION",
        1,
        values.model_version,
        "Version number (a positive integer) for `MODEL_PATH`.",
    )
    model_sha256: str | None = setting(
        "MODEL_SHA256",
        None,
        values.sha256,
        "Expected sha256 of the (single) model file; a mismatch stops startup.",
    )
    execution_providers: tuple[str, ...] = setting(
        "EXECUTION_PROVIDERS",
        ("CPUExecutionProvider",),
        values.providers,
        "Comma list in order of preference: `cuda`, `tensorrt`, `rocm`, `openvino`, `dnnl`, "
        "`cpu`. CPU is always added last; an unusable GPU provider logs a WARNING naming the "
        "fallback. `GET /v2/models/{m}` shows what is really in use.",
        "`cpu`",
    )
    intra_op_threads: int | None = setting(
        "INTRA_OP_THREADS",
        None,
        values.int_in(1, 1024),
        'ONNX Runtime intra-op threads per session. "Usable" = CPUs in this process\'s '
        "affinity mask, capped by the tightest cgroup quota (`cpu.max` / `cpu.cfs_quota_us`, "
        "rounded down) from the process's own cgroup (`/proc/self/cgroup`) up to the root, "
        "not the host's count.",
        "usable CPUs ÷ `WORKERS` ÷ `INFERENCE_WORKERS`",
    )
    workers: int = setting(
        "WORKERS",
        1,
        values.workers,
        "Server processes sharing the port, for when one Python process is the limit (small "
        "requests on several cores). Each loads its own sessions with `INTRA_OP_THREADS` "
        "derived from usable CPUs ÷ `WORKERS`; `/metrics` adds up all of them, and SIGTERM "
        "drains all of them. Memory grows with each (one copy of every model per process). "
        "`auto`: one per usable CPU, fewer (said in one log line) if the memory limit would "
        "not hold them (see *Workers*).",
    )
    inference_workers: int = setting(
        "INFERENCE_WORKERS",
        1,
        values.int_in(1, 64),
        "Threads running sessions. With 1, a run known to take at most 2 ms runs on the event "
        "loop itself while no other run is busy (cheaper than the hand-off); longer runs never "
        "block it. Raise it (with fewer intra-op threads each) to run several small requests "
        "in parallel.",
    )
    max_batch_size: int | None = setting(
        "MAX_BATCH_SIZE",
        None,
        values.int_in(0, 65536),
        "Dynamic batching: concurrent requests to a model whose inputs and outputs all have a "
        "variable first dimension are merged into session runs of at most this many rows and "
        "split back exactly; other models are never merged. Unset: "
        f"{DEFAULT_MAX_BATCH_SIZE}, and a request of more rows runs alone. Set: a hard cap, as "
        "in Triton (a request of more rows gets 400); `0` or `1` turns batching off. `/config` "
        "says which (see *Dynamic batching*). If a merged run fails (e.g. one request's index "
        "is out of range), each of its requests is run alone, so only the bad one gets the "
        "error.",
        f"`{DEFAULT_MAX_BATCH_SIZE}` (larger requests run alone)",
    )
    # 0: merge what queued up while the previous run was busy, never wait for company (a
    # fixed wait only slowed one core down in bench/: docs/OPTIMIZATION.md, finding 4).
    max_batch_delay_ms: float = setting(
        "MAX_BATCH_DELAY_MS",
        0.0,
        values.float_in(0.0, 60_000.0),
        "How long the first request of a batch waits for company (0 to 60000). A batch starts "
        "only when an inference worker is free, so under load batches fill up by themselves; "
        "with the default 0 nothing ever waits (measured best on small CPU budgets: "
        "docs/OPTIMIZATION.md). Raise it only when many cores make runs short and requests "
        "sparse.",
        "`0`",
    )
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES",
        64 * 1024 * 1024,
        values.int_in(1024, 2**40),
        "Larger request bodies get 413 before they are buffered; so do compressed ones that "
        "inflate past it, and requests whose tensors would decode to more than twice it "
        "(docs/LIMITS.md).",
        "`67108864` (64 MiB)",
    )
    body_timeout_s: float = setting(
        "BODY_TIMEOUT_S",
        30.0,
        values.float_in(0.001, 3600.0),
        "The whole request body must arrive within this many seconds (0.001 to 3600) of the "
        "request being admitted, else 408: a stalled upload cannot hold a `MAX_INFLIGHT` slot "
        "or delay shutdown for longer.",
        "`30`",
    )
    max_header_bytes: int = setting(
        "MAX_HEADER_BYTES",
        64 * 1024,
        values.int_in(1024, 16 * 1024 * 1024),
        "Request line plus headers larger than this get 431 and the connection is closed, "
        "before more of them is buffered; so do a chunked body's trailers.",
        "`65536` (64 KiB)",
    )
    header_timeout_s: float = setting(
        "HEADER_TIMEOUT_S",
        10.0,
        values.float_in(0.001, 3600.0),
        "A request's line and headers must arrive within this many seconds (from the "
        "connection's start for its first request, else from the request's first byte); "
        "otherwise 408 and the connection is closed, so a slow or silent client cannot hold "
        "one open. It never runs while the server works on a request.",
        "`10`",
    )
    keep_alive_timeout_s: float = setting(
        "KEEP_ALIVE_TIMEOUT_S",
        75.0,
        values.float_in(0.001, 86400.0),
        "An idle kept-alive connection is closed after this many seconds without a new "
        "request. Behind a load balancer, keep it longer than the balancer's own idle timeout "
        "(AWS ALB: 60 s), so that the balancer is the one that closes.",
        "`75`",
    )
    max_inflight: int = setting(
        "MAX_INFLIGHT",
        128,
        values.int_in(1, 1_000_000),
        "Inference requests handled at once; more get 503 with `Retry-After: 1` at once "
        "instead of queueing without bound. Health, metadata and metrics are not limited.",
    )
    shutdown_timeout_s: int = setting(
        "SHUTDOWN_TIMEOUT_S",
        30,
        values.int_in(0, 3600),
        "On SIGTERM/SIGINT, how long in-flight requests may take to finish before the server "
        "exits anyway. Give the container runtime longer (`docker stop -t`, Kubernetes "
        "`terminationGracePeriodSeconds`).",
    )
    log_level: str = setting(
        "LOG_LEVEL",
        "info",
        values.choice(LOG_LEVELS),
        "`debug` (also enables access logs), `info`, `warning`, `error`, `critical`.",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        values.choice(LOG_FORMATS),
        "`text`, or `json` for one JSON object per line (`time`, `level`, `logger`, `message`).",
    )
    # Not checked here: a bad URL must not stop serving (service/inference_log/ says why).
    prediction_log_url: str | None = setting(
        "PREDICTION_LOG_URL",
        None,
        str,
        "`postgresql://user[:password]@host[:port]/database`: log every inference request to "
        "PostgreSQL (table `inference_log`, see *Inference log*). Written in batches off the "
        "request path: a slow, down or misconfigured database never slows or fails a request; "
        "a malformed URL or a refused login is one ERROR line and serving goes on.",
        "unset (off)",
        secret=True,
    )
    prediction_log_password_file: Path | None = setting(
        "PREDICTION_LOG_PASSWORD_FILE",
        None,
        Path,
        "File holding the database password (a Compose or Kubernetes secret; trailing "
        "newlines are ignored); it overrides a password in the URL.",
    )
    prediction_log_payloads: bool = setting(
        "PREDICTION_LOG_PAYLOADS",
        False,
        values.boolean,
        "`1`: also store the input and output tensors (column `payload`). Off by default, as a "
        "privacy choice: requests may carry personal data, and the log keeps them indefinitely.",
        "`0` (off)",
    )
    prediction_log_queue_size: int = setting(
        "PREDICTION_LOG_QUEUE_SIZE",
        10000,
        values.int_in(1, 10_000_000),
        "Rows held in memory while the database is slow or down; beyond it rows are dropped "
        'and counted (`prediction_log_dropped_total{reason="queue_full"}`). The queued rows '
        "also hold at most 64 MiB in all (ids, names and texts cut to 2000 characters; with "
        "payloads, their tensors): docs/LIMITS.md.",
    )
    prediction_log_flush_timeout_s: float = setting(
        "PREDICTION_LOG_FLUSH_TIMEOUT_S",
        5.0,
        values.float_in(0.0, 600.0),
        "On SIGTERM/SIGINT, after in-flight requests finish, how long queued rows may take to "
        "be written; what is left is counted as dropped (`shutdown`).",
        "`5`",
    )


def declared() -> list[tuple[str, Setting, Any]]:
    """(field name, its Setting, its default) for every setting, in declaration order."""
    return [(f.name, f.metadata["setting"], f.default) for f in fields(Settings)]


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate all settings from ``env`` (normally ``os.environ``)."""
    parsed: dict[str, Any] = {}
    for name, spec, _ in declared():
        raw = env.get(spec.env)
        if raw is None or raw.strip() == "":
            continue
        try:
            parsed[name] = spec.parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"invalid {spec.env}={raw!r}: {exc}") from None
    settings = Settings(**parsed)
    if settings.model_path is not None and settings.model_repository is not None:
        raise SettingsError(
            f"set only one of MODEL_PATH={str(settings.model_path)!r} and "
            f"MODEL_REPOSITORY={str(settings.model_repository)!r}"
        )
    return settings


def settings_table() -> str:
    """The configuration table of docs/SERVER.md (Markdown), made from the declarations above."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for _, spec, default in declared():
        if spec.shown_default is not None:
            shown = spec.shown_default
        else:
            shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{spec.env}` | {shown} | {spec.doc} |")
    return "\n".join(rows)


def settings_help(program: str) -> str:
    """``python -m service --help``: every setting with its default and meaning, as plain text."""

    def plain(text: str) -> str:
        return text.replace("`", "")

    lines = [
        f"usage: {program} [--help]",
        "",
        "Serve ONNX models over the Open Inference Protocol v2 (HTTP). Every setting is an",
        "environment variable (docs/SERVER.md):",
    ]
    for _, spec, default in declared():
        if spec.shown_default is not None:
            shown = plain(spec.shown_default)
        else:
            shown = "unset" if default is None else str(default)
        lines += ["", f"  {spec.env} (default: {shown})"]
        lines += textwrap.wrap(
            plain(spec.doc), width=88, initial_indent="      ", subsequent_indent="      "
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_table() + "\n")
