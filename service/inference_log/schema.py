"""The SQL of the inference log: its table, the migrations that create it, and the writes.

Rows are COPYed into ``inference_log``; every row carries (server_id, seq), the table's primary
key, so a batch whose write may have committed is written again with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

TABLE = "inference_log"
# Versioned, additive migrations: a server writes the columns it knows, so an older server
# keeps working on a database a newer one has migrated.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
        CREATE TABLE {TABLE} (
            server_id uuid NOT NULL,
            seq bigint NOT NULL,
            started_at timestamptz NOT NULL,
            request_id text NOT NULL,
            model text NOT NULL,
            model_version text,
            status smallint NOT NULL,
            error text,
            latency_ms double precision NOT NULL,
            batch_rows integer,
            input_bytes bigint,
            output_bytes bigint,
            input_sha256 bytea,
            payload jsonb,
            PRIMARY KEY (server_id, seq)
        );
        CREATE INDEX {TABLE}_started_at ON {TABLE} (started_at);
        COMMENT ON TABLE {TABLE} IS 'One row per inference request (onnx-serving)';
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
COLUMNS = (
    "server_id",
    "seq",
    "started_at",
    "request_id",
    "model",
    "model_version",
    "status",
    "error",
    "latency_ms",
    "batch_rows",
    "input_bytes",
    "output_bytes",
    "input_sha256",
    "payload",
)
# Serialises migrations of servers starting together on one database.
MIGRATION_LOCK = 0x6F6E6E78_6C6F6701
RETRY_TABLE = "inference_log_retry"


async def write_rows(
    connection: asyncpg.Connection | None, rows: Sequence[tuple[Any, ...]], retry: bool
) -> None:
    """COPY rows (tuples in COLUMNS order) into the log. `retry`: an earlier attempt may
    have committed, so only the rows not in the table yet are added."""
    assert connection is not None
    if not retry:  # fresh rows: none of their keys can be in the table yet
        await connection.copy_records_to_table(TABLE, records=rows, columns=COLUMNS)
        return
    columns = ", ".join(COLUMNS)
    async with connection.transaction():
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {RETRY_TABLE} (LIKE {TABLE}) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table(RETRY_TABLE, records=rows, columns=COLUMNS)
        await connection.execute(
            f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {RETRY_TABLE} "
            "ON CONFLICT DO NOTHING"
        )


async def migrate(connection: asyncpg.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION (idempotent; concurrent servers take turns).
    Returns the version the database is at afterwards."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        # Look before creating: a role without CREATE on the schema can still log into
        # tables that exist.
        if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{TABLE}_schema"):
            await connection.execute(
                f"CREATE TABLE {TABLE}_schema ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        current = await connection.fetchval(f"SELECT coalesce(max(version), 0) FROM {TABLE}_schema")
        for version, statements in MIGRATIONS:
            if version > current:
                await connection.execute(statements)
                await connection.execute(
                    f"INSERT INTO {TABLE}_schema (version) VALUES ($1)", version
                )
        return max(int(current), SCHEMA_VERSION)
