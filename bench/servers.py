"""The servers under test: how each is launched on the same model, and what it speaks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import formats, log_database, processes, workload
from bench.formats import RequestFormat

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENVS = {"mlserver": BENCH_DIR / ".venv-mlserver", "litserve": BENCH_DIR / ".venv-litserve"}
# Ours with dynamic batching off, against its defaults (batching on: merge up to 64 rows,
# never wait for company; docs/SERVER.md, Dynamic batching).
NO_BATCHING_ENV = {"MAX_BATCH_SIZE": "0"}


@dataclass(frozen=True)
class Launch:
    command: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class ServerSpec:
    """One server process; it may be measured with several request formats."""

    name: str
    formats: tuple[RequestFormat, ...]
    ready_path: str
    # (model repository, work dir, port) -> command line and environment
    launch: Callable[[Path, Path, int], Launch]
    # Why it cannot run here, or None when it can.
    unavailable: Callable[[], str | None] = lambda: None
    label: str = ""  # its name in the results, when not `name` (which --servers takes)

    @property
    def shown(self) -> str:
        return self.label or self.name


def _peer_python(peer: str) -> Path:
    return PEER_VENVS[peer] / "bin" / "python"


def _missing_peer(peer: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if _peer_python(peer).exists():
            return None
        return f"{PEER_VENVS[peer]} missing: run bench/setup.sh"

    return check


def _ours(extra_env: dict[str, str]) -> Callable[[Path, Path, int], Launch]:
    def launch(repository: Path, _work: Path, port: int) -> Launch:
        env = {
            "HOST": processes.LOOPBACK,
            "PORT": str(port),
            "MODEL_REPOSITORY": str(repository),
            "INTRA_OP_THREADS": "1",
            "LOG_LEVEL": "warning",
            **extra_env,
        }
        return Launch([sys.executable, "-m", "service"], env)

    return launch


def _ours_unavailable() -> str | None:
    if (workload.REPO_ROOT / "service" / "__main__.py").exists():
        return None
    return "service/__main__.py not found"


def _ours_granian(repository: Path, work: Path, port: int) -> Launch:
    """Ours with granian's HTTP layer in place of uvicorn's: one worker, one Rust thread."""
    env = _ours({})(repository, work, port).env
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory"]
    command += ["--host", processes.LOOPBACK, "--port", str(port), "--workers", "1"]
    command += ["--runtime-threads", "1", "--no-ws", "--log-level", "warning"]
    return Launch([*command, "bench.granian_app:app"], env)


def _ours_with_log(repository: Path, work: Path, port: int) -> Launch:
    """Ours, every request logged to PostgreSQL (docs/SERVER.md: The inference log)."""
    env = {"PREDICTION_LOG_URL": log_database.database_url()}
    return _ours(env)(repository, work, port)


def _ours_with_log_unavailable() -> str | None:
    return _ours_unavailable() or log_database.unavailable()


def _naive(repository: Path, _work: Path, port: int) -> Launch:
    model = repository / workload.MODEL_NAME / "1" / "model.onnx"
    command = [sys.executable, "-m", "uvicorn", "bench.naive_app:app"]
    command += ["--host", processes.LOOPBACK, "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    return Launch(command, {"MODEL_PATH": str(model)})


def _mlserver(batching: dict[str, float]) -> Callable[[Path, Path, int], Launch]:
    def launch(repository: Path, work: Path, port: int) -> Launch:
        return _mlserver_launch(repository, work / f"mlserver-{port}", port, batching)

    return launch


def _mlserver_launch(
    repository: Path, folder: Path, port: int, batching: dict[str, float]
) -> Launch:
    """A settings folder for `mlserver start`: our ORT runtime class, one process, no extras."""
    model_folder = folder / workload.MODEL_NAME
    model_folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": processes.LOOPBACK,
        "http_port": port,
        "grpc_port": processes.free_port(),
        "metrics_port": processes.free_port(),
        # Inference in the server process itself: no extra worker processes to feed
        # through IPC on a one-core budget (MLServer's fastest setting here).
        "parallel_workers": 0,
        "debug": False,
    }
    model_settings = {
        "name": workload.MODEL_NAME,
        "implementation": "bench.mlserver_runtime.OnnxRuntimeModel",
        "parameters": {"uri": str(repository / workload.MODEL_NAME / "1" / "model.onnx")},
        **batching,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (model_folder / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = PEER_VENVS["mlserver"] / "bin" / "mlserver"
    return Launch([str(mlserver), "start", str(folder)], {"PYTHONPATH": str(workload.REPO_ROOT)})


def _litserve(repository: Path, _work: Path, port: int) -> Launch:
    model = repository / workload.MODEL_NAME / "1" / "model.onnx"
    command = [str(_peer_python("litserve")), "-m", "bench.litserve_app", str(port)]
    return Launch(command, {"MODEL_PATH": str(model), "PYTHONPATH": str(workload.REPO_ROOT)})


def _trivial(_repository: Path, _work: Path, port: int) -> Launch:
    return Launch([sys.executable, "-m", "bench.trivial_server", str(port)], {})


OURS = ServerSpec(
    "ours",
    (formats.OIP_JSON, formats.OIP_BINARY),
    "/v2/health/ready",
    _ours({}),
    _ours_unavailable,
    label="ours (defaults)",
)
OURS_NO_BATCHING = ServerSpec(
    "ours-nobatch",
    (formats.OIP_JSON, formats.OIP_BINARY),
    "/v2/health/ready",
    _ours(NO_BATCHING_ENV),
    _ours_unavailable,
    label="ours (batching off)",
)
# WORKERS=2 on the same one-core budget: what a second process costs per request.
OURS_TWO_WORKERS = ServerSpec(
    "ours-2workers",
    (formats.OIP_JSON,),
    "/v2/health/ready",
    _ours({"WORKERS": "2"}),
    _ours_unavailable,
)
# The inference log's cost: the same as OURS plus PREDICTION_LOG_URL.
OURS_LOG = ServerSpec(
    "ours-log",
    (formats.OIP_JSON, formats.OIP_BINARY),
    "/v2/health/ready",
    _ours_with_log,
    _ours_with_log_unavailable,
)
# The HTTP stack chosen by measurement: the same application under granian.
OURS_GRANIAN = ServerSpec(
    "ours-granian",
    (formats.OIP_JSON, formats.OIP_BINARY),
    "/v2/health/ready",
    _ours_granian,
    _ours_unavailable,
)
NAIVE = ServerSpec("naive-fastapi", (formats.PLAIN_JSON,), "/health", _naive)
MLSERVER = ServerSpec(
    "mlserver",
    (formats.OIP_JSON,),
    f"/v2/models/{workload.MODEL_NAME}/ready",
    _mlserver({}),
    _missing_peer("mlserver"),
)
# MLServer's adaptive batching (max_batch_time in seconds). 2 ms is its better setting here:
# with 0 it merged nothing (same rate as batching off); with 2 ms it gained at 32 connections.
# Its cap stays 128 rows, the setting it was measured best with, above ours (64).
MLSERVER_BATCHING = replace(
    MLSERVER,
    name="mlserver-batching",
    launch=_mlserver({"max_batch_size": 128, "max_batch_time": 0.002}),
)
LITSERVE = ServerSpec(
    "litserve", (formats.PLAIN_JSON,), "/health", _litserve, _missing_peer("litserve")
)
# Not a contender: the load generator's ceiling against an endpoint that does no work.
TRIVIAL = ServerSpec("trivial-responder", (), "/v2/health/live", _trivial)

ALL_SERVERS = (
    OURS,
    OURS_NO_BATCHING,
    OURS_GRANIAN,
    OURS_TWO_WORKERS,
    OURS_LOG,
    NAIVE,
    MLSERVER,
    MLSERVER_BATCHING,
    LITSERVE,
)


def baseline(source: Path) -> ServerSpec:
    """Ours from another checkout of `service/` (`--baseline`): a change's before and after,
    side by side in one run. -P keeps the working directory off sys.path, so PYTHONPATH
    decides which `service` runs."""
    ours = _ours({})

    def launch(repository: Path, work: Path, port: int) -> Launch:
        env = {**ours(repository, work, port).env, "PYTHONPATH": str(source)}
        return Launch([sys.executable, "-P", "-m", "service"], env)

    def unavailable() -> str | None:
        found = (source / "service" / "__main__.py").is_file()
        return None if found else f"--baseline {source}: no service/__main__.py there"

    return ServerSpec(
        "ours-baseline", OURS.formats, OURS.ready_path, launch, unavailable, "ours (baseline)"
    )
