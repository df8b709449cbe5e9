"""What a failed write blames: the connection (retry the batch later) or some of its rows
(write the others without them)."""

from __future__ import annotations

import asyncpg

# SQLSTATE classes that blame the rows, not the database: data exception, integrity
# constraint violation, program limit exceeded (a value too large to store).
ROW_ERROR_CLASSES = ("22", "23", "54")


def connection_problem(exc: BaseException) -> bool:
    """True when the connection, not the rows, is what failed: retry the batch later."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in ("08", "57")  # connection; operator intervention
    # InterfaceError: "connection is closed" and the like; its ValueError kinds are our rows.
    return isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)


def row_problem(exc: BaseException) -> bool:
    """True when some row of the batch is what the database (or asyncpg, encoding it) refused:
    the other rows can be written without it."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in ROW_ERROR_CLASSES
    # asyncpg encodes the rows itself: a value its column cannot take (2**31 in an integer)
    # raises OverflowError, ValueError (asyncpg.DataError) or TypeError before anything is sent.
    return isinstance(exc, ValueError | TypeError | ArithmeticError)


def connection_is_idle(connection: asyncpg.Connection) -> bool:
    """True when the connection can take the next statement (no failed transaction open)."""
    return not connection.is_closed() and not connection.is_in_transaction()


def failure_text(exc: BaseException) -> str:
    """A failure for a log line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
