"""The access log: who read which member context, when (HIPAA audit controls, 45 CFR 164.312(b)).

Every read the API and inbox serve of an approval item or a run's details is one row: the user, their role,
what they read (identifiers only: workflow and approval ids, never the content), the answer (shown, or not
found, which is also what an approver gets for an item outside their role), and the time. Append-only: the
database refuses updates and deletes. ``careloom ledger access`` lists it.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

__all__ = ["AccessEntry", "AccessLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
    seq          INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    workflow_id  TEXT,
    approval_id  TEXT,
    outcome      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_user ON access_log (user_id, at);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
"""


class AccessEntry(BaseModel):
    at: datetime
    user_id: str
    role: str
    action: str
    workflow_id: str | None = None
    approval_id: str | None = None
    outcome: str


class AccessLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record(self, *, user_id: str, role: str, action: str, outcome: str, workflow_id: str | None = None,
               approval_id: str | None = None, at: datetime | None = None) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO access_log (at, user_id, role, action, workflow_id, approval_id, outcome) "
                "VALUES (?,?,?,?,?,?,?)",
                ((at or datetime.now(UTC)).isoformat(), user_id, role, action, workflow_id, approval_id, outcome))

    def entries(self, *, user_id: str | None = None, since: datetime | None = None,
                workflow_id: str | None = None) -> list[AccessEntry]:
        clauses, params = [], []
        for column, value in (("user_id", user_id), ("workflow_id", workflow_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since.isoformat())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute("SELECT at, user_id, role, action, workflow_id, approval_id, outcome FROM "
                                  f"access_log{where} ORDER BY seq", params).fetchall()
        return [AccessEntry(at=datetime.fromisoformat(r[0]), user_id=r[1], role=r[2], action=r[3], workflow_id=r[4],
                            approval_id=r[5], outcome=r[6]) for r in rows]

    def close(self) -> None:
        self._conn.close()
