"""The access log: who read which member context, when (HIPAA audit controls, 45 CFR 164.312(b)).

Every read the API and inbox serve of an approval item or a run's details is one row: the user, their role,
what they read (identifiers only: workflow and approval ids, never the content), the answer (shown, or not
found, which is also what an approver gets for an item outside their role), and the time. Append-only: the
database refuses updates and deletes. ``careloom ledger access`` lists it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from store.connect import open_database
from store.database import Database

__all__ = ["AccessEntry", "AccessLog"]


class AccessEntry(BaseModel):
    at: datetime
    user_id: str
    role: str
    action: str
    workflow_id: str | None = None
    approval_id: str | None = None
    outcome: str


class AccessLog:
    """The access_log table of the care records database (schema in ``store/migrations``)."""

    def __init__(self, where: Path | str | Database) -> None:
        self._owned = not isinstance(where, Database)
        self.db = where if isinstance(where, Database) else open_database(where)

    def record(self, *, user_id: str, role: str, action: str, outcome: str, workflow_id: str | None = None,
               approval_id: str | None = None, at: datetime | None = None) -> None:
        self.db.write(lambda db: db.rows(
            "INSERT INTO access_log (at, user_id, role, action, workflow_id, approval_id, outcome) "
            "VALUES (:at, :u, :r, :a, :w, :ap, :o)",
            {"at": (at or datetime.now(UTC)).isoformat(), "u": user_id, "r": role, "a": action, "w": workflow_id,
             "ap": approval_id, "o": outcome}))

    def entries(self, *, user_id: str | None = None, since: datetime | None = None,
                workflow_id: str | None = None) -> list[AccessEntry]:
        clauses, params = [], {}
        for column, value in (("user_id", user_id), ("workflow_id", workflow_id)):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if since is not None:
            clauses.append("at >= :since")
            params["since"] = since.isoformat()
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.read(lambda db: db.rows(
            f"SELECT at, user_id, role, action, workflow_id, approval_id, outcome FROM access_log{where} "  # noqa: S608
            "ORDER BY seq", params))
        return [AccessEntry(at=datetime.fromisoformat(r[0]), user_id=r[1], role=r[2], action=r[3], workflow_id=r[4],
                            approval_id=r[5], outcome=r[6]) for r in rows]

    def close(self) -> None:
        if self._owned:
            self.db.close()
