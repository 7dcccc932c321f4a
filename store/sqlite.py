"""One SQLite database file: WAL mode, one connection per thread, IMMEDIATE write transactions.

:class:`store.database.Database` drives the embedded care records database through it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SqliteDatabase", "needs_new_connection"]

# Primary result codes (the low byte of an extended code) of faults that outlive the statement on the connection
# that met them: SQLite opens the file read-only when it cannot open it read-write, and that connection stays
# read-only after the file is writable again; after an I/O error the connection's view of the WAL index may be
# stale. Only a new connection sees the file as it is now.
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CANTOPEN = 8, 10, 14
_REOPEN_CODES = frozenset({_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CANTOPEN})


def needs_new_connection(err: BaseException) -> bool:
    """True for a SQLite error that a fresh connection may not meet (read-only file, I/O error, cannot open)."""
    if not isinstance(err, sqlite3.Error):
        return False
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _REOPEN_CODES
    message = str(err).lower()  # an error raised without a code (older drivers): the primary messages
    return "readonly database" in message or "disk i/o error" in message or "unable to open" in message


class SqliteDatabase:
    """Opens (and creates) the file; safe to share across a thread pool."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.connection()

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                conn.close()  # a half-configured connection is never kept: the next call opens a new one
                raise
            self._local.conn = conn
        return conn

    def reset(self) -> None:
        """Drop this thread's connection, so the next statement opens a new one (after a fault that stays on a
        connection, :func:`needs_new_connection`). Never raises: the connection may be broken already."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()  # closing also releases any lock an unfinished transaction held
            except sqlite3.Error:
                pass

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception, including one raised into the thread.

        Temporal cancels a running sync activity by raising an exception asynchronously in its thread
        (worker shutdown, timeouts). Landing between BEGIN and the handler, it would leave this thread's
        connection holding the write lock, and every other writer would wait out the busy timeout and
        fail. So the rollback sits in ``finally``, and a transaction left open on this thread's
        connection by an earlier interruption is rolled back before the next one begins. A rollback that
        fails itself (a read-only file, an I/O error) drops the connection instead, which releases the lock
        too, and lets the error that caused it surface rather than the rollback's.
        """
        conn = self.connection()
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.reset()
                conn = self.connection()
        committed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
            committed = True
        finally:
            if not committed and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self.reset()

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
