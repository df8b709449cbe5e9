"""Throwaway PostgreSQL 15 clusters on 127.0.0.1 from Debian's `postgresql` package.

    cluster = PostgresCluster.create(password="secret")   # initdb + start, on a free port
    url = cluster.url(cluster.create_database())           # postgresql://postgres:…@127.0.0.1:…/…
    cluster.kill(); cluster.start()                        # a crash and a restart
    rows = cluster.query(url, "SELECT count(*) FROM inference_log")
    cluster.destroy()

initdb refuses to run as root, so as root every server command runs as Debian's `postgres`
user in a folder of its own (pytest's tmp folders are root-only). Used by the inference log
tests and by bench/ (the `ours-log` contender).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

PACKAGE = "postgresql"  # Debian's package with the server binaries (version 15 on bookworm)
BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
SUPERUSER = "postgres"
# Fast and disposable: nothing here has to survive a power cut, but a committed row must
# survive a server crash (kill()), so synchronous_commit stays on.
SERVER_OPTIONS = "-c fsync=off -c full_page_writes=off -c listen_addresses=127.0.0.1"


def bin_dir() -> Path | None:
    for candidate in BIN_DIRS:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and shutil.which("initdb") else None


def postgres_problem() -> str | None:
    """Why no throwaway cluster can be started here, or None when one can."""
    if bin_dir() is None:
        return f"PostgreSQL 15 server binaries not found (apt-get install {PACKAGE})"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root needs the '{SUPERUSER}' user of Debian's {PACKAGE} package"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresCluster:
    root: Path
    port: int
    password: str

    @classmethod
    def create(cls, password: str = "log-test-password") -> PostgresCluster:
        """initdb (password logins only, scram-sha-256) and start on a free port."""
        problem = postgres_problem()
        if problem is not None:
            raise RuntimeError(problem)
        root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        cluster = cls(root, free_port(), password)
        (root / "pwfile").write_text(password + "\n")
        if os.geteuid() == 0:
            account = pwd.getpwnam(SUPERUSER)
            for path in (root, root / "pwfile"):
                os.chown(path, account.pw_uid, account.pw_gid)
        cluster._run(
            "initdb",
            "--pgdata",
            str(cluster.data),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(root / "pwfile"),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        cluster.start()
        return cluster

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        directory = bin_dir()
        assert directory is not None
        command: Sequence[str] = [str(directory / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if done.returncode != 0:
            log = (
                self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            )
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}{log}")

    def start(self) -> None:
        options = f"{SERVER_OPTIONS} -p {self.port} -k {self.root}"
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
        )

    def stop(self) -> None:
        """A clean, fast shutdown (open connections are closed)."""
        self._run("pg_ctl", "stop", "--wait", "-D", str(self.data), "-m", "fast")

    def kill(self) -> None:
        """A crash: every server process quits at once, without a checkpoint."""
        self._run("pg_ctl", "stop", "--wait", "-D", str(self.data), "-m", "immediate")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = SUPERUSER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"log_{uuid.uuid4().hex[:12]}"
        self.execute(self.url(), f'CREATE DATABASE "{name}"')
        return name

    def execute(self, url: str, sql: str) -> None:
        async def go() -> None:
            connection = await asyncpg.connect(url, timeout=30)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(go())

    def query(self, url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            connection = await asyncpg.connect(url, timeout=30)
            try:
                return [dict(row) for row in await connection.fetch(sql, *args)]
            finally:
                await connection.close()

        return asyncio.run(go())
