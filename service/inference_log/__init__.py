"""The inference log: one row per inference request in PostgreSQL, never in the way of serving.

Each request fills a :class:`LogEntry` as it goes and hands it to :meth:`InferenceLog.submit`:
an append to a bounded in-memory queue, no I/O. One writer task takes the queue in batches and
COPYs them into ``inference_log`` over a single asyncpg connection. When the database is slow
or down, requests answer exactly as without the log: rows wait in memory (at most
``PREDICTION_LOG_QUEUE_SIZE`` rows and ``QUEUE_BUDGET_BYTES``, each row charged what it holds),
rows that cannot be kept are counted in ``prediction_log_dropped_total{reason}``, and the writer
reconnects with exponential backoff. Every row carries (server_id, seq), the table's primary
key, so a batch whose write failed half-way (the commit may have happened) is retried with
ON CONFLICT DO NOTHING: no row is written twice. A batch the database refuses for its data is
halved until the refused rows are alone: the others are written, those are dropped
(``refused``). At shutdown the queue is flushed for at most ``PREDICTION_LOG_FLUSH_TIMEOUT_S``.

Bad configuration (a malformed URL, an unreadable password file) is one ERROR line at startup;
serving goes on, and the rows are counted as dropped with reason ``misconfigured``.

The package, one module per concern:

- database_url.py: checking PREDICTION_LOG_URL, keeping its password out of log lines
- config.py: LogConfig, from the PREDICTION_LOG_* settings
- schema.py: the SQL: the table, its migrations, the COPY and the retry's insert
- entries.py: a request's row (LogEntry), its cost against the queue's budget, table rows
- write_errors.py: what a failed write blames, the connection or its rows
- writer.py: InferenceLog, the queue and the task that writes it
"""

from service.inference_log.config import LogConfig, config_from
from service.inference_log.database_url import (
    LogConfigError,
    check_url,
    describe_target,
    redact,
    split_password,
)
from service.inference_log.entries import TEXT_LIMIT, LogEntry
from service.inference_log.schema import COLUMNS, SCHEMA_VERSION, migrate, write_rows
from service.inference_log.writer import InferenceLog

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "TEXT_LIMIT",
    "InferenceLog",
    "LogConfig",
    "LogConfigError",
    "LogEntry",
    "check_url",
    "config_from",
    "describe_target",
    "migrate",
    "redact",
    "split_password",
    "write_rows",
]
