"""One SQLite database file: WAL mode, one connection per thread, IMMEDIATE write transactions.

:class:`store.database.Database` drives the embedded care records database through it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SqliteDatabase"]


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
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception, including one raised into the thread.

        Temporal cancels a running sync activity by raising an exception asynchronously in its thread
        (worker shutdown, timeouts). Landing between BEGIN and the handler, it would leave this thread's
        connection holding the write lock, and every other writer would wait out the busy timeout and
        fail. So the rollback sits in ``finally``, and a transaction left open on this thread's
        connection by an earlier interruption is rolled back before the next one begins.
        """
        conn = self.connection()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        committed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
            committed = True
        finally:
            if not committed and conn.in_transaction:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
