"""The PostgreSQL behind the `ours-log` contender: one throwaway cluster per bench run
(tests/service/postgres.py, Debian's PostgreSQL 15), a fresh database per server start.

The cluster runs on the load generator's core, so the server's core pays only the inference
log's own work (queueing, hashing, the writer's COPY encoding), as with a database on another
machine; the database's share of CPU is not charged to the server.
"""

from __future__ import annotations

import atexit
import subprocess

from bench import processes
from tests.service.postgres import PostgresCluster, postgres_problem

_cluster: PostgresCluster | None = None


def unavailable() -> str | None:
    return postgres_problem()


def database_url() -> str:
    """A new empty database's URL, on the run's cluster (started on first use)."""
    global _cluster
    if _cluster is None:
        _cluster = PostgresCluster.create()
        atexit.register(_cluster.destroy)
        postmaster = (_cluster.data / "postmaster.pid").read_text().split()[0]
        # Backends are forked from the postmaster and inherit its CPU set.
        subprocess.run(
            ["taskset", "-a", "-c", "-p", processes.LOADGEN_CPU, postmaster],
            capture_output=True,
            check=True,
        )
    return _cluster.url(_cluster.create_database())
