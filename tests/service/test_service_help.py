"""`python -m service --help` lists every setting and exits 0 without loading a model or
binding a port; any other argument is one error line and exit 2."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import main
from service.settings import declared
from tests.service.live_server import REPO, server_env


def run_service(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_setting_and_starts_nothing(tmp_path: Path, flag: str) -> None:
    # Serving would fail loudly here: the model file is missing and the port is taken.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {"PORT": str(port), "MODEL_PATH": str(tmp_path / "missing.onnx")}
        result = run_service([flag], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: python -m service [--help]\n")
    # Each setting's entry starts "  NAME (default: ...)"; its meaning is indented further.
    entries = re.findall(r"^  ([A-Z0-9_]+) \(default: ", result.stdout, re.MULTILINE)
    assert entries == [spec.env for _, spec, _ in declared()]
    assert "MODEL_VERSION (default: 1)" in result.stdout


def test_help_ignores_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """Help is read before the settings: a bad value cannot hide the usage."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAX_INFLIGHT", "0")
        assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert "MAX_INFLIGHT (default: 128)" in out and err == ""


@pytest.mark.parametrize("argument", ["--port=9000", "serve", "-x"])
def test_an_unknown_argument_is_one_error_line(tmp_path: Path, argument: str) -> None:
    result = run_service([argument], {"MODEL_PATH": str(tmp_path / "missing.onnx")})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: unknown argument {argument!r}")
